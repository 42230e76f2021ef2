"""Side-by-side broker benchmarks: the same librdkafka workloads on Eventyard, Apache Kafka and any
other Kafka-compatible broker, in one run, with every figure and the Eventyard / peer ratio.

`targets` starts and describes the brokers, `workloads` holds the producer and consumer loops,
`report` the medians and tables. The scripts are bench/broker_throughput.py and bench/latency.py.
"""
