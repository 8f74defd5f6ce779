package dev.kclrs.interop;

import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;

import software.amazon.awssdk.auth.credentials.AwsBasicCredentials;
import software.amazon.awssdk.auth.credentials.StaticCredentialsProvider;
import software.amazon.awssdk.http.Protocol;
import software.amazon.awssdk.http.nio.netty.NettyNioAsyncHttpClient;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.cloudwatch.CloudWatchAsyncClient;
import software.amazon.awssdk.services.dynamodb.DynamoDbAsyncClient;
import software.amazon.awssdk.services.kinesis.KinesisAsyncClient;
import software.amazon.kinesis.common.ConfigsBuilder;
import software.amazon.kinesis.common.InitialPositionInStream;
import software.amazon.kinesis.common.InitialPositionInStreamExtended;
import software.amazon.kinesis.coordinator.CoordinatorConfig;
import software.amazon.kinesis.coordinator.Scheduler;
import software.amazon.kinesis.metrics.MetricsLevel;
import software.amazon.kinesis.metrics.NullMetricsFactory;
import software.amazon.kinesis.retrieval.polling.PollingConfig;

/**
 * java-kcl-peer: a real Java KCL worker that leaves the same evidence as kcl-rs's verify-worker (see
 * {@link VerifyProcessor} and {@link Evidence}), for kcl-rs's interop tests and benchmark.
 *
 * <pre>
 * java -cp 'target/kcl3/java-kcl-peer.jar:target/kcl3/lib/*' dev.kclrs.interop.Peer
 *   --stream S --app A --worker-id W --output FILE [--journal FILE]
 *   --kinesis-endpoint URL --dynamodb-endpoint URL [--lease-duration-ms 10000] [--idle-ms 500]
 *   [--client-version 3x|compatible-with-2x] [--hold-back N] [--max-leases-to-steal N]
 *   [--graceful-timeout-ms 20000] [--expect N [--timeout-secs 180]]
 * </pre>
 *
 * <p>{@code --expect N} is the benchmark mode ({@link BenchProcessor}): no evidence files, exit after N records.
 *
 * <p>Polling retrieval, TRIM_HORIZON for shards without a checkpoint, metrics off (MetricsLevel.NONE with a null
 * factory; the CloudWatch client points at a closed loopback port), lease table = application name as in Java KCL.
 * SIGTERM = graceful shutdown (final checkpoints), exit 0; exit 1 when Java KCL's startGracefulShutdown() did not
 * complete within --graceful-timeout-ms (2.7.2 never completes it while the worker holds leases of finished shards).
 * {@code --client-version} picks the 3.x build's CoordinatorConfig.ClientVersionConfig (the 2.x build has none and
 * rejects it).
 */
public final class Peer {
    private Peer() {}

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        String stream = required(args, "stream");
        String app = required(args, "app");
        String workerId = required(args, "worker-id");
        // Benchmark mode (--expect N): count, checkpoint per batch, print one JSON line and stop after N records.
        BenchProcessor.Counter bench =
                args.containsKey("expect") ? new BenchProcessor.Counter(Long.parseLong(args.get("expect"))) : null;
        Path outputPath = bench != null ? null : Path.of(required(args, "output"));
        Path journalPath = args.containsKey("journal") ? Path.of(args.get("journal")) : null;
        long leaseMs = Long.parseLong(args.getOrDefault("lease-duration-ms", "10000"));
        long idleMs = Long.parseLong(args.getOrDefault("idle-ms", "500"));
        int holdBack = Integer.parseInt(args.getOrDefault("hold-back", "0"));
        long gracefulMs = Long.parseLong(args.getOrDefault("graceful-timeout-ms", "20000"));

        Evidence output = outputPath == null ? null : Evidence.open(outputPath, true);
        Evidence journal = Evidence.open(journalPath, false);
        long pid = ProcessHandle.current().pid();
        journal.event("\"ev\":\"start\",\"worker\":" + Evidence.str(workerId) + ",\"pid\":" + pid);

        Region region = Region.US_EAST_1;
        StaticCredentialsProvider credentials =
                StaticCredentialsProvider.create(AwsBasicCredentials.create("LOCAL", "LOCAL"));
        // kinesis-mock's plain port: HTTP/1.1 (polling needs no HTTP/2).
        KinesisAsyncClient kinesis = KinesisAsyncClient.builder()
                .region(region)
                .credentialsProvider(credentials)
                .endpointOverride(URI.create(required(args, "kinesis-endpoint")))
                .httpClientBuilder(NettyNioAsyncHttpClient.builder().protocol(Protocol.HTTP1_1))
                .build();
        DynamoDbAsyncClient dynamo = DynamoDbAsyncClient.builder()
                .region(region)
                .credentialsProvider(credentials)
                .endpointOverride(URI.create(required(args, "dynamodb-endpoint")))
                .build();
        // Never called with metrics off; a closed loopback port in case it is.
        CloudWatchAsyncClient cloudWatch = CloudWatchAsyncClient.builder()
                .region(region)
                .credentialsProvider(credentials)
                .endpointOverride(URI.create("http://127.0.0.1:9"))
                .build();

        ConfigsBuilder configs = new ConfigsBuilder(stream, app, kinesis, dynamo, cloudWatch, workerId,
                bench != null
                        ? BenchProcessor.factory(bench)
                        : VerifyProcessor.factory(workerId, output, journal, holdBack));
        PollingConfig polling = new PollingConfig(stream, kinesis).idleTimeBetweenReadsInMillis(idleMs);
        var leases = configs.leaseManagementConfig()
                .failoverTimeMillis(leaseMs)
                .shardSyncIntervalMillis(Math.max(1000, leaseMs))
                .maxLeasesToStealAtOneTime(Integer.parseInt(args.getOrDefault("max-leases-to-steal", "1")));
        CoordinatorConfig coordinator = configs.coordinatorConfig()
                .parentShardPollIntervalMillis(Math.min(10_000, Math.max(500, leaseMs / 4)));
        if (args.containsKey("client-version")) {
            ClientVersion.apply(coordinator, args.get("client-version"));
        }
        Scheduler scheduler = new Scheduler(
                configs.checkpointConfig(),
                coordinator,
                leases,
                configs.lifecycleConfig(),
                configs.metricsConfig().metricsFactory(new NullMetricsFactory()).metricsLevel(MetricsLevel.NONE),
                configs.processorConfig(),
                configs.retrievalConfig()
                        .retrievalSpecificConfig(polling)
                        .initialPositionInStreamExtended(InitialPositionInStreamExtended.newInitialPosition(
                                InitialPositionInStream.TRIM_HORIZON)));

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            boolean ok;
            try {
                ok = scheduler.startGracefulShutdown().get(gracefulMs, TimeUnit.MILLISECONDS);
                if (!ok) {
                    // Java KCL's GracefulShutdownCoordinator answers false when its consumers ended but not every
                    // processor reported its shutdown; say so, the exit code alone does not tell which case it was.
                    System.err.println("java-kcl-peer: graceful shutdown completed with false (a processor did not"
                            + " report its shutdown)");
                }
            } catch (java.util.concurrent.TimeoutException e) {
                System.err.println("java-kcl-peer: graceful shutdown did not complete within " + gracefulMs + " ms");
                ok = false;
            } catch (Exception e) {
                System.err.println("java-kcl-peer: graceful shutdown failed: " + e);
                ok = false;
            }
            journal.event("\"ev\":\"exit\",\"worker\":" + Evidence.str(workerId) + ",\"pid\":" + pid + ",\"ok\":"
                    + ok + ",\"error\":null");
            // Exit 0 after a clean graceful stop, like verify-worker (the JVM's own code after SIGTERM is 143).
            Runtime.getRuntime().halt(ok ? 0 : 1);
        }, "graceful-shutdown"));

        Thread worker = new Thread(scheduler, "scheduler");
        worker.start();
        if (bench != null) {
            long timeoutSecs = Long.parseLong(args.getOrDefault("timeout-secs", "180"));
            if (!bench.done.await(timeoutSecs, TimeUnit.SECONDS)) {
                System.err.println("java-kcl-peer: timed out with " + bench.delivered.get() + " records");
                System.exit(1);
            }
            System.out.println(bench.result());
            System.out.flush();
            // The shutdown hook stops the scheduler gracefully, then halts with its verdict.
            System.exit(0);
        }
        worker.join();
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                usage("bad argument " + argv[i]);
            }
            args.put(argv[i].substring(2), argv[++i]);
        }
        return args;
    }

    private static String required(Map<String, String> args, String name) {
        String value = args.get(name);
        if (value == null) {
            usage("--" + name + " is required");
        }
        return value;
    }

    private static void usage(String why) {
        System.err.println("java-kcl-peer: " + why + " (see Peer.java for the arguments)");
        System.exit(2);
    }

    /** Sets the 3.x-only CoordinatorConfig.clientVersionConfig by reflection, so one source builds against 2.x. */
    static final class ClientVersion {
        static void apply(CoordinatorConfig coordinator, String version) throws ReflectiveOperationException {
            String name = switch (version) {
                case "3x" -> "CLIENT_VERSION_CONFIG_3X";
                case "compatible-with-2x" -> "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X";
                default -> {
                    usage("--client-version is 3x or compatible-with-2x");
                    yield "";
                }
            };
            Class<?> type;
            try {
                type = Class.forName("software.amazon.kinesis.coordinator.CoordinatorConfig$ClientVersionConfig");
            } catch (ClassNotFoundException e) {
                usage("--client-version needs the KCL 3.x build");
                return;
            }
            @SuppressWarnings({"unchecked", "rawtypes"})
            Object value = Enum.valueOf((Class<Enum>) type, name);
            CoordinatorConfig.class.getMethod("clientVersionConfig", type).invoke(coordinator, value);
        }
    }
}
