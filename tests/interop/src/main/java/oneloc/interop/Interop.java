package oneloc.interop;

import java.io.File;
import java.io.FileDescriptor;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A plain third-party client of the OneLoc topics: the reference Apache Avro implementation
 * (BinaryMessageEncoder / BinaryMessageDecoder, single-object encoding) and the Apache Kafka client,
 * given only the .avsc files.
 *
 * <pre>
 *   vectors SCHEMA_DIR EXTRA_SCHEMAS_JSON                 test vectors (JSON) on stdout
 *   produce SCHEMA_DIR SERVERS N LOC_TOPIC ORDER_TOPIC POI_TOPIC
 *                                                        N records of each event type
 *   consume SCHEMA_DIR SERVERS TOPIC SCHEMA COUNT TIMEOUT_S
 *                                                        COUNT records decoded, one JSON line each
 * </pre>
 */
public final class Interop {
    static final String[] SCHEMAS = {"UserLocation", "Order", "Poi", "DeadLetter"};
    static final long T = 1_335_000_000_000L;  // 2012-04-21, epoch ms
    static final PrintStream OUT = new PrintStream(new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);

    public static void main(String[] args) throws Exception {
        Map<String, Schema> schemas = load(new File(args[1]));
        switch (args[0]) {
            case "vectors" -> vectors(schemas, new File(args[2]));
            case "produce" -> produce(schemas, args[2], Integer.parseInt(args[3]), args[4], args[5], args[6]);
            case "consume" -> consume(schemas, args[2], args[3], args[4], Integer.parseInt(args[5]),
                    Integer.parseInt(args[6]));
            default -> throw new IllegalArgumentException("unknown command " + args[0]);
        }
    }

    /** The shared named types first, then the schemas, all with one parser (as the user did). */
    static Map<String, Schema> load(File dir) throws Exception {
        Schema.Parser parser = new Schema.Parser();
        parser.parse(new File(dir, "GeoPoint.avsc"));
        Map<String, Schema> out = new LinkedHashMap<>();
        for (String name : SCHEMAS) {
            out.put(name, parser.parse(new File(dir, name + ".avsc")));
        }
        return out;
    }

    static GenericRecord rec(Schema s, Object... kv) {
        GenericRecord r = new GenericData.Record(s);
        for (int i = 0; i < kv.length; i += 2) {
            r.put((String) kv[i], kv[i + 1]);
        }
        return r;
    }

    static GenericRecord point(Map<String, Schema> s, double lat, double lng) {
        Schema geo = s.get("Order").getField("user_location").schema().getTypes().get(1);
        return rec(geo, "lat", lat, "lng", lng);
    }

    static GenericRecord location(Map<String, Schema> s, String id, String user, long t, double lat, double lng,
                                  Double accuracy, String source) {
        return rec(s.get("UserLocation"), "event_id", id, "user_id", user, "event_time", t, "lat", lat, "lng", lng,
                "accuracy_m", accuracy, "source", source);
    }

    static GenericRecord order(Map<String, Schema> s, String id, String user, String poi, long t, double amount,
                               String status, GenericRecord where) {
        return rec(s.get("Order"), "order_id", id, "user_id", user, "poi_id", poi, "event_time", t, "amount", amount,
                "currency", "USD", "status", status, "user_location", where);
    }

    static GenericRecord poi(Map<String, Schema> s, String id, String category, String categoryId, double lat,
                             double lng, int price, double spend, boolean active, String venue) {
        return rec(s.get("Poi"), "poi_id", id, "category", category, "category_id", categoryId, "lat", lat,
                "lng", lng, "price_level", price, "avg_spend", spend, "currency", "USD", "active", active,
                "updated_at", T, "venue_id", venue);
    }

    // ------------------------------------------------------------------ vectors

    static void vectors(Map<String, Schema> s, File extraSchemas) throws Exception {
        List<GenericRecord> records = List.of(
                location(s, "e-1", "u-42", T + 1, 40.7128, -74.006, null, "checkin"),
                location(s, "e-2", "\u00fc-7 \u2615", T + 123_456, -33.8688, 151.2093, 12.5, "gps"),
                order(s, "o-1", "u-42", "p-9", T + 60_000, 23.75, "completed", point(s, 40.7, -73.99)),
                order(s, "o-2", "u-43", "p-9", T + 61_000, 0.0, "refunded", null),
                poi(s, "p-9", "Caf\u00e9", "4bf58dd8d48988d1e0931735", 40.7411, -73.9897, 2, 18.5, true, null),
                poi(s, "p-10", "", null, 0.0, -0.5, 0, 0.0, false, "v-10"));
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("generator", "tests/interop (org.apache.avro:avro " + Schema.class.getPackage().getImplementationVersion()
                + ", SchemaNormalization.parsingFingerprint64, BinaryMessageEncoder)");
        Map<String, Object> fps = new LinkedHashMap<>();
        for (Map.Entry<String, Schema> e : s.entrySet()) {
            long fp = SchemaNormalization.parsingFingerprint64(e.getValue());
            Map<String, Object> one = new LinkedHashMap<>();
            one.put("canonical_form", SchemaNormalization.toParsingForm(e.getValue()));
            one.put("fingerprint64_signed", fp);
            one.put("fingerprint64_hex", String.format("%016x", fp));
            one.put("header_hex", hex(ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(fp).array()));
            fps.put(e.getKey(), one);
        }
        out.put("schemas", fps);
        List<Object> extra = new ArrayList<>();  // more shapes of schema: canonical form and fingerprint only
        for (com.fasterxml.jackson.databind.JsonNode node : new com.fasterxml.jackson.databind.ObjectMapper().readTree(extraSchemas)) {
            Schema schema = new Schema.Parser().parse(node.toString());
            Map<String, Object> one = new LinkedHashMap<>();
            one.put("canonical_form", SchemaNormalization.toParsingForm(schema));
            one.put("fingerprint64_hex", String.format("%016x", SchemaNormalization.parsingFingerprint64(schema)));
            extra.add(one);
        }
        out.put("extra_schemas", extra);
        List<Object> recs = new ArrayList<>();
        for (GenericRecord r : records) {
            BinaryMessageEncoder<GenericRecord> enc = new BinaryMessageEncoder<>(GenericData.get(), r.getSchema());
            Map<String, Object> one = new LinkedHashMap<>();
            one.put("schema", r.getSchema().getName());
            one.put("record", r);
            one.put("encoded_hex", hex(bytes(enc.encode(r))));
            recs.add(one);
        }
        out.put("records", recs);
        StringBuilder b = new StringBuilder();
        json(b, out, "");
        OUT.println(b);
    }

    // ------------------------------------------------------------------ produce / consume

    static void produce(Map<String, Schema> s, String servers, int n, String locTopic, String orderTopic,
                        String poiTopic) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", servers);
        p.put("acks", "all");
        p.put("enable.idempotence", "true");
        Map<String, BinaryMessageEncoder<GenericRecord>> enc = new LinkedHashMap<>();
        for (String name : new String[] {"UserLocation", "Order", "Poi"}) {
            enc.put(name, new BinaryMessageEncoder<>(GenericData.get(), s.get(name)));
        }
        try (KafkaProducer<String, byte[]> producer = new KafkaProducer<>(p, new StringSerializer(), new ByteArraySerializer())) {
            for (int i = 0; i < n; i++) {  // the catalog first: orders must name a known POI
                GenericRecord r = poi(s, "jp-" + i, i % 2 == 0 ? "Caf\u00e9" : "Bar", i % 3 == 0 ? null : "c-" + (i % 3),
                        40.70 + i * 1e-3, -73.99 + i * 1e-3, i % 5, 10.0 + i, true, i % 2 == 0 ? "v-" + i : null);
                producer.send(new ProducerRecord<>(poiTopic, "jp-" + i, bytes(enc.get("Poi").encode(r)))).get();
            }
            for (int i = 0; i < n; i++) {
                String user = "ju-" + (i % 7);
                GenericRecord l = location(s, "je-" + i, user, T + i * 60_000L, 40.70 + i * 1e-4, -73.99 - i * 1e-4,
                        i % 2 == 0 ? null : 3.0 + i, i % 2 == 0 ? "checkin" : "gps");
                producer.send(new ProducerRecord<>(locTopic, user, bytes(enc.get("UserLocation").encode(l))));
                GenericRecord o = order(s, "jo-" + i, user, "jp-" + (i % n), T + i * 60_000L + 1, 5.0 + i * 0.25,
                        "completed", i % 2 == 0 ? point(s, 40.70 + i * 1e-4, -73.99 - i * 1e-4) : null);
                producer.send(new ProducerRecord<>(orderTopic, user, bytes(enc.get("Order").encode(o))));
            }
            producer.flush();
        }
        OUT.println("{\"produced\": " + n + "}");
    }

    static void consume(Map<String, Schema> s, String servers, String topic, String schema, int count,
                        int timeoutS) throws Exception {
        BinaryMessageDecoder<GenericRecord> dec = new BinaryMessageDecoder<>(GenericData.get(), s.get(schema));
        Properties p = new Properties();
        p.put("bootstrap.servers", servers);
        p.put("enable.auto.commit", "false");
        p.put("auto.offset.reset", "earliest");
        int seen = 0;
        long deadline = System.nanoTime() + timeoutS * 1_000_000_000L;
        try (KafkaConsumer<String, byte[]> consumer = new KafkaConsumer<>(p, new StringDeserializer(), new ByteArrayDeserializer())) {
            List<TopicPartition> parts = new ArrayList<>();
            for (PartitionInfo info : consumer.partitionsFor(topic)) {
                parts.add(new TopicPartition(topic, info.partition()));
            }
            consumer.assign(parts);
            consumer.seekToBeginning(parts);
            while (seen < count && System.nanoTime() < deadline) {
                for (ConsumerRecord<String, byte[]> m : consumer.poll(Duration.ofMillis(500))) {
                    seen++;
                    Map<String, Object> line = new LinkedHashMap<>();
                    line.put("partition", m.partition());
                    line.put("offset", m.offset());
                    line.put("key", m.key());
                    try {
                        line.put("record", dec.decode(m.value()));
                    } catch (Exception e) {  // reported, not fatal: the test counts and shows them
                        line.put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
                    }
                    StringBuilder b = new StringBuilder();
                    json(b, line, null);
                    OUT.println(b);
                }
            }
        }
        if (seen < count) {
            System.err.println("consumed " + seen + " of " + count + " records from " + topic + " in " + timeoutS + " s");
            System.exit(3);
        }
    }

    // ------------------------------------------------------------------ helpers

    static byte[] bytes(ByteBuffer b) {
        byte[] out = new byte[b.remaining()];
        b.duplicate().get(out);
        return out;
    }

    static String hex(byte[] b) {
        StringBuilder out = new StringBuilder();
        for (byte x : b) {
            out.append(String.format("%02x", x & 0xff));
        }
        return out.toString();
    }

    /** JSON of maps, lists, records, strings, numbers, booleans and null; indent null = one line. */
    static void json(StringBuilder b, Object v, String indent) {
        String nl = indent == null ? "" : "\n" + indent + "  ";
        String end = indent == null ? "" : "\n" + indent;
        String in = indent == null ? null : indent + "  ";
        if (v == null) {
            b.append("null");
        } else if (v instanceof GenericRecord r) {
            Map<String, Object> m = new LinkedHashMap<>();
            for (Schema.Field f : r.getSchema().getFields()) {
                m.put(f.name(), r.get(f.name()));
            }
            json(b, m, null);
        } else if (v instanceof Map<?, ?> m) {
            b.append('{');
            String sep = "";
            for (Map.Entry<?, ?> e : m.entrySet()) {
                b.append(sep).append(nl);
                string(b, e.getKey().toString());
                b.append(": ");
                json(b, e.getValue(), in);
                sep = ",";
            }
            b.append(end).append('}');
        } else if (v instanceof List<?> l) {
            b.append('[');
            String sep = "";
            for (Object x : l) {
                b.append(sep).append(nl);
                json(b, x, in);
                sep = ",";
            }
            b.append(end).append(']');
        } else if (v instanceof CharSequence c) {
            string(b, c.toString());
        } else if (v instanceof ByteBuffer bb) {
            string(b, hex(bytes(bb)));
        } else {
            b.append(v);  // Integer, Long, Double (Double.toString reads back to the same double), Boolean
        }
    }

    static void string(StringBuilder b, String s) {
        b.append('"');
        for (char c : s.toCharArray()) {
            if (c == '"' || c == '\\') {
                b.append('\\').append(c);
            } else if (c < 0x20 || c > 0x7e) {
                b.append(String.format("\\u%04x", (int) c));
            } else {
                b.append(c);
            }
        }
        b.append('"');
    }
}
