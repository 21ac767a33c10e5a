"""FedAvg ServerApp for Frugal's Swift devices (`frugal fl join --flower`)."""
