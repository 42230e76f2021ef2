"""The control plane: Kafka add-ons on a shared cluster, over an HTTP API (docs/platform.md)."""
