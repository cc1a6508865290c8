"""The replay producer: a plan of what to send (pure) and sending it to Kafka (kafka-python)."""
