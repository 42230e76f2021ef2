package eventyard.clients;

import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Runs one scenario with the Apache Kafka Java client against a broker.
 *
 * <p>Usage: {@code Scenario BOOTSTRAP SCENARIO TOPIC}, SCENARIO one of admin, produce, consume. On success it
 * prints one JSON line and exits 0; on failure it prints the error and exits 1.
 */
public final class Scenario {
    static final int PARTITIONS = 3;
    static final int RECORDS = 1000;
    static final long DEADLINE_MS = 60_000;

    private Scenario() {}

    public static void main(String[] args) {
        if (args.length != 3) {
            System.err.println("usage: Scenario BOOTSTRAP admin|produce|consume TOPIC");
            System.exit(2);
        }
        // A watchdog: a client that waits forever on a broker's answer fails instead of hanging.
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(DEADLINE_MS + 30_000);
            } catch (InterruptedException e) {
                return;
            }
            System.err.println("error: scenario did not finish in time");
            Runtime.getRuntime().halt(1);
        });
        watchdog.setDaemon(true);
        watchdog.start();
        try {
            Map<String, Object> summary = switch (args[1]) {
                case "admin" -> admin(args[0], args[2]);
                case "produce" -> produce(args[0], args[2]);
                case "consume" -> consume(args[0], args[2]);
                default -> throw new IllegalArgumentException("unknown scenario " + args[1]);
            };
            System.out.println(toJson(summary));
            System.out.flush();
            System.exit(0);
        } catch (Throwable e) {
            System.err.println("error: " + e);
            e.printStackTrace(System.err);
            System.exit(1);
        }
    }

    static Map<String, Object> base(String scenario, String topic) {
        Map<String, Object> summary = new LinkedHashMap<>();
        summary.put("client", "kafka-clients");
        summary.put("version", org.apache.kafka.common.utils.AppInfoParser.getVersion());
        summary.put("scenario", scenario);
        summary.put("topic", topic);
        return summary;
    }

    static Admin admin(String bootstrap) {
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return Admin.create(props);
    }

    static void createTopic(Admin admin, String topic) throws Exception {
        try {
            admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            if (!(e.getCause() instanceof TopicExistsException)) {
                throw e;
            }
        }
    }

    static Map<String, Object> admin(String bootstrap, String topic) throws Exception {
        Map<String, Object> summary = base("admin", topic);
        try (Admin admin = admin(bootstrap)) {
            createTopic(admin, topic);
            TopicDescription description =
                    admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS).get(topic);
            summary.put("partitions", description.partitions().size());
            Set<String> listed = admin.listTopics().names().get(30, TimeUnit.SECONDS);
            summary.put("listed", listed.contains(topic));
            admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
            // Deletion is asynchronous in Kafka: wait for the topic to leave the listing.
            boolean gone = false;
            long until = System.currentTimeMillis() + 15_000;
            while (!gone && System.currentTimeMillis() < until) {
                gone = !admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic);
                if (!gone) {
                    Thread.sleep(100);
                }
            }
            summary.put("deleted", gone);
        }
        return summary;
    }

    static Map<String, Object> produce(String bootstrap, String topic) throws Exception {
        Map<String, Object> summary = base("produce", topic);
        try (Admin admin = admin(bootstrap)) {
            createTopic(admin, topic);
        }
        Properties props = new Properties();
        props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        props.put(ProducerConfig.ACKS_CONFIG, "all");
        props.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "lz4");
        props.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        props.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
        props.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        Map<Integer, Integer> perPartition = new TreeMap<>();
        int acked = 0;
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(props, new StringSerializer(), new StringSerializer())) {
            List<Future<RecordMetadata>> sends = new ArrayList<>();
            for (int i = 0; i < RECORDS; i++) {
                sends.add(producer.send(new ProducerRecord<>(topic, "key-" + i, "value-" + i)));
            }
            producer.flush();
            for (Future<RecordMetadata> send : sends) {
                RecordMetadata metadata = send.get(30, TimeUnit.SECONDS);
                perPartition.merge(metadata.partition(), 1, Integer::sum);
                acked++;
            }
        }
        summary.put("produced", acked);
        summary.put("partitions_used", perPartition.size());
        return summary;
    }

    static KafkaConsumer<String, String> consumer(String bootstrap, String group) {
        Properties props = new Properties();
        props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        props.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        props.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
        return new KafkaConsumer<>(props, new StringDeserializer(), new StringDeserializer());
    }

    static Map<String, Object> consume(String bootstrap, String topic) throws Exception {
        Map<String, Object> summary = base("consume", topic);
        String group = topic + "-group";
        Set<String> keys = new HashSet<>();
        int consumed = 0;
        int mismatched = 0;
        long committed = 0;
        try (KafkaConsumer<String, String> consumer = consumer(bootstrap, group)) {
            consumer.subscribe(List.of(topic));
            long until = System.currentTimeMillis() + DEADLINE_MS / 2;
            while (consumed < RECORDS && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, String> record : records) {
                    consumed++;
                    keys.add(record.key());
                    if (!record.value().equals("value-" + record.key().substring(4))) {
                        mismatched++;
                    }
                }
            }
            // Poll a little longer: more than RECORDS records would be a duplicate delivery.
            for (int i = 0; i < 2; i++) {
                consumed += consumer.poll(Duration.ofMillis(300)).count();
            }
            consumer.commitSync(Duration.ofSeconds(30));
            Set<TopicPartition> assignment = consumer.assignment();
            Map<TopicPartition, OffsetAndMetadata> offsets = consumer.committed(assignment, Duration.ofSeconds(30));
            for (OffsetAndMetadata offset : offsets.values()) {
                if (offset != null) {
                    committed += offset.offset();
                }
            }
        }
        int second = 0;
        int secondAssigned = 0;
        try (KafkaConsumer<String, String> consumer = consumer(bootstrap, group)) {
            consumer.subscribe(List.of(topic));
            long until = System.currentTimeMillis() + 20_000;
            // Poll until the group has handed this consumer its partitions, then a little more.
            while (consumer.assignment().isEmpty() && System.currentTimeMillis() < until) {
                second += consumer.poll(Duration.ofMillis(300)).count();
            }
            for (int i = 0; i < 3; i++) {
                second += consumer.poll(Duration.ofMillis(300)).count();
            }
            secondAssigned = consumer.assignment().size();
        }
        summary.put("group", group);
        summary.put("consumed", consumed);
        summary.put("unique_keys", keys.size());
        summary.put("mismatched", mismatched);
        summary.put("committed", committed);
        summary.put("second_assigned", secondAssigned);
        summary.put("second_consumed", second);
        return summary;
    }

    static String toJson(Map<String, Object> map) {
        StringBuilder out = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, Object> entry : map.entrySet()) {
            if (!first) {
                out.append(", ");
            }
            first = false;
            out.append(quote(entry.getKey())).append(": ");
            Object value = entry.getValue();
            if (value instanceof Number || value instanceof Boolean) {
                out.append(value);
            } else {
                out.append(quote(String.valueOf(value)));
            }
        }
        return out.append("}").toString();
    }

    static String quote(String s) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                default -> {
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }
}
