"""ServerApp: Flower's built-in FedAvg over Frugal devices; saves the global model of every round."""

import json
import os

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from .model import initial_arrays

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    cfg = context.run_config
    rounds = int(cfg["num-server-rounds"])
    out_dir = str(cfg["out-dir"])
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

    def save_global(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        # Called with the initial arrays (round 0) and after every round's aggregation.
        if out_dir:
            np.savez(os.path.join(out_dir, f"global_round{server_round}.npz"), **{k: a.numpy() for k, a in arrays.items()})
        return None

    strategy = FedAvg(fraction_train=1.0, fraction_evaluate=1.0, min_train_nodes=2,
                      min_evaluate_nodes=2, min_available_nodes=2)
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord({k: Array(v) for k, v in initial_arrays(str(cfg["model"]), int(cfg["seed"])).items()}),
        num_rounds=rounds,
        train_config=ConfigRecord({"lr": float(cfg["lr"]), "local-steps": int(cfg["local-steps"]),
                                   "batch-size": int(cfg["batch-size"])}),
        evaluate_fn=save_global,
    )
    # A message type the devices do not handle: each must answer with an error reply.
    query = [Message(content=RecordDict({"config": ConfigRecord({"what": "stats"})}), dst_node_id=node,
                     message_type="query") for node in grid.get_node_ids()]
    unsupported = [{"node": r.metadata.src_node_id, "error_code": r.error.code if r.has_error() else None,
                    "error_reason": r.error.reason if r.has_error() else None}
                   for r in grid.send_and_receive(query, timeout=120)]
    if out_dir:
        summary = {
            "rounds": rounds,
            "query_replies": unsupported,
            "train_metrics": {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()},
            "evaluate_metrics": {str(r): dict(m) for r, m in result.evaluate_metrics_clientapp.items()},
        }
        with open(os.path.join(out_dir, "summary.json"), "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=1)
