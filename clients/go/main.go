// Command eventyard-franz runs one scenario with franz-go against a Kafka-compatible broker.
//
// Usage: eventyard-franz BOOTSTRAP admin|produce|consume TOPIC
//
// On success it prints one JSON line and exits 0; on failure it prints the error and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	partitions = 3
	records    = 1000
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: eventyard-franz BOOTSTRAP admin|produce|consume TOPIC")
		os.Exit(2)
	}
	bootstrap, scenario, topic := os.Args[1], os.Args[2], os.Args[3]
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var summary map[string]any
	var err error
	switch scenario {
	case "admin":
		summary, err = runAdmin(ctx, bootstrap, topic)
	case "produce":
		summary, err = runProduce(ctx, bootstrap, topic)
	case "consume":
		summary, err = runConsume(ctx, bootstrap, topic)
	default:
		err = fmt.Errorf("unknown scenario %q", scenario)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	summary["client"] = "franz-go"
	summary["version"] = moduleVersion("github.com/twmb/franz-go")
	summary["scenario"] = scenario
	summary["topic"] = topic
	line, err := json.Marshal(summary)
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
	fmt.Println(string(line))
}

func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == path {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func newClient(bootstrap string, opts ...kgo.Opt) (*kgo.Client, error) {
	base := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(bootstrap, ",")...),
		kgo.RequestTimeoutOverhead(10 * time.Second),
	}
	return kgo.NewClient(append(base, opts...)...)
}

func createTopic(ctx context.Context, adm *kadm.Client, topic string) error {
	resp, err := adm.CreateTopic(ctx, partitions, 1, nil, topic)
	if err != nil {
		return fmt.Errorf("create topic: %w", err)
	}
	if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic: %w", resp.Err)
	}
	return nil
}

func runAdmin(ctx context.Context, bootstrap, topic string) (map[string]any, error) {
	// kadm answers listings from the client's metadata cache, kept 5s by default: keep it
	// briefly, so the listing after the delete shows the broker's state.
	cl, err := newClient(bootstrap, kgo.MetadataMinAge(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if err := createTopic(ctx, adm, topic); err != nil {
		return nil, err
	}
	described, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("describe topic: %w", err)
	}
	detail, ok := described[topic]
	if !ok || detail.Err != nil {
		return nil, fmt.Errorf("describe topic: %v", detail.Err)
	}
	all, err := adm.ListTopics(ctx)
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	listed := all.Has(topic)
	deleted, err := adm.DeleteTopics(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("delete topic: %w", err)
	}
	if err := deleted.Error(); err != nil {
		return nil, fmt.Errorf("delete topic: %w", err)
	}
	gone := false
	for deadline := time.Now().Add(15 * time.Second); !gone && time.Now().Before(deadline); {
		all, err := adm.ListTopics(ctx)
		if err != nil {
			return nil, fmt.Errorf("list topics after delete: %w", err)
		}
		gone = !all.Has(topic)
		if !gone {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return map[string]any{"partitions": len(detail.Partitions), "listed": listed, "deleted": gone}, nil
}

func runProduce(ctx context.Context, bootstrap, topic string) (map[string]any, error) {
	cl, err := newClient(bootstrap,
		kgo.RequiredAcks(kgo.AllISRAcks()), // idempotent writes are the default and need acks=all
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordDeliveryTimeout(30*time.Second),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	if err := createTopic(ctx, kadm.NewClient(cl), topic); err != nil {
		return nil, err
	}
	batch := make([]*kgo.Record, 0, records)
	for i := 0; i < records; i++ {
		batch = append(batch, &kgo.Record{
			Topic: topic,
			Key:   []byte(fmt.Sprintf("key-%d", i)),
			Value: []byte(fmt.Sprintf("value-%d", i)),
		})
	}
	results := cl.ProduceSync(ctx, batch...)
	if err := results.FirstErr(); err != nil {
		return nil, fmt.Errorf("produce: %w", err)
	}
	used := map[int32]bool{}
	for _, r := range results {
		used[r.Record.Partition] = true
	}
	return map[string]any{"produced": len(results), "partitions_used": len(used)}, nil
}

func runConsume(ctx context.Context, bootstrap, topic string) (map[string]any, error) {
	group := topic + "-group"
	consumerOpts := func(assigned *atomic.Int32) []kgo.Opt {
		return []kgo.Opt{
			kgo.ConsumerGroup(group),
			kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.DisableAutoCommit(),
			kgo.FetchMaxWait(200 * time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
				assigned.Add(int32(len(m[topic])))
			}),
		}
	}

	var firstAssigned atomic.Int32
	cl, err := newClient(bootstrap, consumerOpts(&firstAssigned)...)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	consumed, mismatched := 0, 0
	pollUntil := time.Now().Add(30 * time.Second)
	for consumed < records && time.Now().Before(pollUntil) {
		pctx, pcancel := context.WithTimeout(ctx, time.Second)
		fetches := cl.PollFetches(pctx)
		pcancel()
		for _, fe := range fetches.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				cl.Close()
				return nil, fmt.Errorf("fetch %s/%d: %w", fe.Topic, fe.Partition, fe.Err)
			}
		}
		fetches.EachRecord(func(r *kgo.Record) {
			consumed++
			keys[string(r.Key)] = true
			if string(r.Value) != "value-"+strings.TrimPrefix(string(r.Key), "key-") {
				mismatched++
			}
		})
	}
	// Poll a little longer: more than `records` records would be a duplicate delivery.
	pctx, pcancel := context.WithTimeout(ctx, 600*time.Millisecond)
	consumed += cl.PollFetches(pctx).NumRecords()
	pcancel()
	if err := cl.CommitUncommittedOffsets(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("commit: %w", err)
	}
	adm := kadm.NewClient(cl)
	offsets, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("fetch committed offsets: %w", err)
	}
	var committed int64
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic && o.Err == nil {
			committed += o.At
		}
	})
	cl.Close() // leaves the group

	var secondAssigned atomic.Int32
	second, err := newClient(bootstrap, consumerOpts(&secondAssigned)...)
	if err != nil {
		return nil, err
	}
	defer second.Close()
	secondConsumed := 0
	extra := 3
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && extra > 0; {
		pctx, pcancel := context.WithTimeout(ctx, 300*time.Millisecond)
		secondConsumed += second.PollFetches(pctx).NumRecords()
		pcancel()
		if secondAssigned.Load() > 0 {
			extra--
		}
	}
	return map[string]any{
		"group":           group,
		"consumed":        consumed,
		"unique_keys":     len(keys),
		"mismatched":      mismatched,
		"committed":       committed,
		"second_assigned": secondAssigned.Load(),
		"second_consumed": secondConsumed,
	}, nil
}
