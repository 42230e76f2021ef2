"""Broker throughput side by side: librdkafka (confluent-kafka) producer and consumer against
Eventyard, and against Apache Kafka and any other broker in the same run.

The matrix is message size x acks x partitions (default {100 B, 1 KB} x {1, all} x {1, 8}); each
cell produces N messages, then consumes them. Every figure is the median of --runs runs, and the
runs alternate between the brokers (all running at once) so that the machine's noise falls on all
of them alike. Printed: each broker's figures, the producer's own ceiling (the same producer into
its own queue, no broker at all), the broker's CPU, the Eventyard / peer ratios; then broker
startup time (process start to first answered request) and idle resident memory.

    python bench/broker_throughput.py [--kafka] [--runs 3] [--messages 1000000 | 300000,100000]
    python bench/broker_throughput.py --bootstrap host:port --name tansu   # any other broker too
    python bench/broker_throughput.py --sizes 100 --acks all --partitions 1   # one cell
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from dataclasses import astuple

from sidebyside.report import median_fields, percent, progress, ratio, table
from sidebyside.targets import (
    EVENTYARD,
    KAFKA,
    Target,
    all_targets,
    eventyard_startup_and_memory,
    kafka_startup_and_memory,
)
from sidebyside.workloads import Cell, Run, run_cell


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--messages",
        default="1000000",
        help="messages per run: one number, or one per size (comma-separated, in --sizes order)",
    )
    parser.add_argument("--sizes", default="100,1024", help="message sizes in bytes")
    parser.add_argument("--acks", default="1,all", help="producer acks settings")
    parser.add_argument("--partitions", default="1,8", help="partition counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup", type=int, default=300_000, help="messages of a discarded first run (0: none)"
    )
    parser.add_argument("--bootstrap", help="also measure this broker (any Kafka-compatible address)")
    parser.add_argument("--name", help="name of the --bootstrap broker in the tables")
    parser.add_argument("--kafka", action="store_true", help="also measure Apache Kafka (reference harness)")
    parser.add_argument("--broker-arg", action="append", default=[], help="extra `eventyard serve` argument")
    parser.add_argument("--no-startup", action="store_true", help="skip startup time and memory")
    return parser.parse_args()


def messages_per_size(args: argparse.Namespace, sizes: list[int]) -> dict[int, int]:
    counts = [int(n) for n in args.messages.split(",")]
    if len(counts) == 1:
        counts *= len(sizes)
    if len(counts) != len(sizes):
        raise SystemExit("--messages: give one count, or one per size")
    return dict(zip(sizes, counts, strict=True))


def size_label(size: int) -> str:
    return f"{size // 1024} KB" if size % 1024 == 0 else f"{size} B"


def measure(
    targets: list[Target], cells: list[Cell], counts: dict[int, int], runs: int
) -> dict[str, dict[Cell, Run]]:
    """Median Run per broker and cell; run i of a cell goes to every broker before run i + 1."""
    results: dict[str, dict[Cell, Run]] = defaultdict(dict)
    for cell in cells:
        samples: dict[str, list[tuple[float, ...]]] = defaultdict(list)
        for i in range(runs):
            for target in targets:
                run = run_cell(target, cell, counts[cell.size])
                samples[target.name].append(astuple(run))
                progress(
                    f"{target.name:>14} {size_label(cell.size):>6} acks={cell.acks:<3} p={cell.partitions} "
                    f"run {i + 1}: produce {run.produce:>10,.0f}  consume {run.consume:>10,.0f} msg/s"
                )
        for name, values in samples.items():
            results[name][cell] = Run(*median_fields(values))
    return results


def print_broker(name: str, results: dict[Cell, Run]) -> None:
    print(f"### {name}")
    rows = []
    for cell, r in results.items():
        rows.append(
            [
                size_label(cell.size),
                cell.acks,
                str(cell.partitions),
                f"{r.ceiling:,.0f}",
                f"{r.produce:,.0f}",
                f"{r.produce * cell.size / 1e6:.1f}",
                f"{r.produce / r.ceiling:.2f}",
                percent(r.produce_cpu),
                f"{r.consume:,.0f}",
                f"{r.consume * cell.size / 1e6:.1f}",
                percent(r.consume_cpu),
            ]
        )
    header = ["size", "acks", "partitions", "ceiling msg/s", "produce msg/s", "MB/s"]
    header += ["produce / ceiling", "broker cpu", "consume msg/s", "MB/s", "broker cpu"]
    table(header, rows)


def print_side_by_side(peer: str, ours: dict[Cell, Run], theirs: dict[Cell, Run]) -> None:
    print(f"### {EVENTYARD} / {peer}")
    rows = []
    for cell, r in ours.items():
        t = theirs[cell]
        rows.append(
            [
                size_label(cell.size),
                cell.acks,
                str(cell.partitions),
                f"{r.produce:,.0f}",
                f"{t.produce:,.0f}",
                ratio(r.produce, t.produce),
                f"{r.consume:,.0f}",
                f"{t.consume:,.0f}",
                ratio(r.consume, t.consume),
            ]
        )
    header = ["size", "acks", "partitions", f"produce {EVENTYARD}", f"produce {peer}", "ratio"]
    header += [f"consume {EVENTYARD}", f"consume {peer}", "ratio"]
    table(header, rows)


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = messages_per_size(args, sizes)
    cells = [
        Cell(size, acks, int(partitions))
        for size in sizes
        for acks in args.acks.split(",")
        for partitions in args.partitions.split(",")
    ]
    per_size = ", ".join(f"{counts[s]:,} of {size_label(s)}" for s in sizes)
    print(f"# {per_size} per run; median of {args.runs} runs, alternating between the brokers,")
    print(
        f"# after a discarded warm-up run of {args.warmup:,} messages on each"
        if args.warmup
        else "# no warm-up"
    )
    print("# ceiling: the same producer into its own queue, no broker; produce / ceiling: how close to it")
    print("# broker cpu: the broker process's CPU during the phase (100% = one core busy)\n")
    with all_targets(args.kafka, args.bootstrap, args.name, args.broker_arg) as targets:
        if args.warmup > 0:  # discarded: the JVM compiles Kafka's hot paths during its first seconds
            for target in targets:
                run_cell(target, Cell(sizes[0], "1", 8), args.warmup)
        results = measure(targets, cells, counts, args.runs)
    for name, per_cell in results.items():
        print_broker(name, per_cell)
    for name, per_cell in results.items():
        if name != EVENTYARD:
            print_side_by_side(name, results[EVENTYARD], per_cell)
    if args.no_startup:
        return
    startup = {EVENTYARD: eventyard_startup_and_memory(args.runs)}
    if args.kafka:
        startup[KAFKA] = kafka_startup_and_memory(args.runs)
    print(f"### startup and idle memory (median of {args.runs})")
    rows = [[name, f"{t * 1000:,.0f} ms", f"{m:.1f} MB"] for name, (t, m) in startup.items()]
    table(["broker", "start to ready", "idle RSS"], rows)
    print("# eventyard: process start to the first answered request", end="")
    print("; kafka: storage format + start to ready" if args.kafka else "")


if __name__ == "__main__":
    main()
