package dev.kclrs.interop;

import java.lang.management.ManagementFactory;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;

import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;

/**
 * The benchmark processor ({@code --expect N}): counts records and checkpoints every batch, like kcl-rs's
 * {@code bench e2e-consume}; once N records were delivered, {@link #result} gives the JSON line that consumer prints
 * (milliseconds since the JVM started: first shard, first record, last record).
 */
final class BenchProcessor implements ShardRecordProcessor {
    /** Shared by every shard's processor. */
    static final class Counter {
        final long expect;
        final AtomicLong delivered = new AtomicLong();
        final CountDownLatch done = new CountDownLatch(1);
        volatile long firstShardMs = -1;
        volatile long firstRecordMs = -1;
        volatile long lastRecordMs = -1;

        Counter(long expect) {
            this.expect = expect;
        }

        String result() {
            return "{\"records\":" + delivered.get() + ",\"first_shard\":{\"ms\":" + firstShardMs
                    + "},\"first_record\":{\"ms\":" + firstRecordMs + "},\"last_record\":{\"ms\":" + lastRecordMs
                    + "}}";
        }
    }

    private final Counter counter;

    private BenchProcessor(Counter counter) {
        this.counter = counter;
    }

    static ShardRecordProcessorFactory factory(Counter counter) {
        return () -> new BenchProcessor(counter);
    }

    private static long sinceStart() {
        return System.currentTimeMillis() - ManagementFactory.getRuntimeMXBean().getStartTime();
    }

    @Override
    public void initialize(InitializationInput input) {
        synchronized (counter) {
            if (counter.firstShardMs < 0) {
                counter.firstShardMs = sinceStart();
            }
        }
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        if (input.records().isEmpty()) {
            return;
        }
        synchronized (counter) {
            if (counter.firstRecordMs < 0) {
                counter.firstRecordMs = sinceStart();
                // bench e2e stamps this line on arrival, the same clock for every contender.
                System.out.println("{\"milestone\":\"first_record\"}");
                System.out.flush();
            }
        }
        try {
            input.checkpointer().checkpoint();
        } catch (Exception e) {
            System.err.println("java-kcl-peer: checkpoint failed: " + e);
        }
        long n = counter.delivered.addAndGet(input.records().size());
        if (n >= counter.expect && counter.done.getCount() > 0) {
            counter.lastRecordMs = sinceStart();
            counter.done.countDown();
        }
    }

    @Override
    public void leaseLost(LeaseLostInput input) {}

    @Override
    public void shardEnded(ShardEndedInput input) {
        try {
            input.checkpointer().checkpoint();
        } catch (Exception e) {
            System.err.println("java-kcl-peer: shard-end checkpoint failed: " + e);
        }
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        try {
            input.checkpointer().checkpoint();
        } catch (Exception e) {
            System.err.println("java-kcl-peer: shutdown checkpoint failed: " + e);
        }
    }
}
