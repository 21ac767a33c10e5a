"""A NumPy ClientApp with the same replies as a Frugal device (for runs with Python SuperNodes).

Frugal's Swift devices do not run this code: they join the SuperLink themselves
(`frugal fl join --flower`). It exists because a Flower App must name a ClientApp, and lets the
same ServerApp be tried with `flower-supernode`. "Training" here is one step of weight decay.
"""

from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    lr = float(msg.content["config"]["lr"])
    arrays = {k: a.numpy() * (1.0 - lr) for k, a in msg.content["arrays"].items()}
    content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in arrays.items()}),
                          "metrics": MetricRecord({"train_loss": 0.0, "num-examples": 100})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    content = RecordDict({"metrics": MetricRecord({"eval_loss": 0.0, "eval_acc": 0.0, "num-examples": 100})})
    return Message(content=content, reply_to=msg)
