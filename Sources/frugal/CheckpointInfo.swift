import FrugalNN
func describeCheckpoint(path: String, json: String?) throws {
    throw CLIError("\(path): not a recognised data set or checkpoint")
}
