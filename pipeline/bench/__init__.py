"""Every benchmark: quality and speed measures printed as JSON, and the metrics they share."""
