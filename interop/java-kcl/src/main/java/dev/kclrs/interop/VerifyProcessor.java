package dev.kclrs.interop;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.atomic.AtomicLong;

import software.amazon.kinesis.exceptions.KinesisClientLibException;
import software.amazon.kinesis.lifecycle.events.InitializationInput;
import software.amazon.kinesis.lifecycle.events.LeaseLostInput;
import software.amazon.kinesis.lifecycle.events.ProcessRecordsInput;
import software.amazon.kinesis.lifecycle.events.ShardEndedInput;
import software.amazon.kinesis.lifecycle.events.ShutdownRequestedInput;
import software.amazon.kinesis.processor.RecordProcessorCheckpointer;
import software.amazon.kinesis.processor.ShardRecordProcessor;
import software.amazon.kinesis.processor.ShardRecordProcessorFactory;
import software.amazon.kinesis.retrieval.KinesisClientRecord;
import software.amazon.kinesis.retrieval.kpl.ExtendedSequenceNumber;

/**
 * The verifying processor, the Java twin of verify-worker's: appends one output line per user record
 * ({"worker","shard","seq","sub","pk","data_b64","epoch","t"}), fsyncs, and only then checkpoints. Each instance is
 * an epoch ({@code WORKER#PID#N}).
 *
 * <p>{@code holdBack} > 0 keeps the checkpoint that many user records behind the last one processed (also at a
 * graceful stop): the next owner redelivers them, and with KPL aggregates the checkpoint lands inside an aggregate,
 * at a sub-sequence number.
 */
final class VerifyProcessor implements ShardRecordProcessor {
    private final String worker;
    private final String epoch;
    private final Evidence output;
    private final Evidence journal;
    private final int holdBack;
    private String shard = "";
    /** The last {@code holdBack + 1} processed positions, oldest first; the oldest is the checkpoint target. */
    private final java.util.ArrayDeque<ExtendedSequenceNumber> recent = new java.util.ArrayDeque<>();
    private ExtendedSequenceNumber lastCheckpoint;

    private VerifyProcessor(String worker, String epoch, Evidence output, Evidence journal, int holdBack) {
        this.worker = worker;
        this.epoch = epoch;
        this.output = output;
        this.journal = journal;
        this.holdBack = holdBack;
    }

    /** Makes one processor per shard lease, numbering the epochs. */
    static ShardRecordProcessorFactory factory(String worker, Evidence output, Evidence journal, int holdBack) {
        AtomicLong next = new AtomicLong();
        long pid = ProcessHandle.current().pid();
        return () -> new VerifyProcessor(
                worker, worker + "#" + pid + "#" + next.getAndIncrement(), output, journal, holdBack);
    }

    /** Text form of a position: {@code SEQUENCE/SUB} or the sentinel's name. */
    static String position(ExtendedSequenceNumber position) {
        if (position == null) {
            return "TRIM_HORIZON";
        }
        if (position.isSentinelCheckpoint()) {
            return position.sequenceNumber();
        }
        return position.sequenceNumber() + "/" + position.subSequenceNumber();
    }

    @Override
    public void initialize(InitializationInput input) {
        shard = input.shardId();
        lastCheckpoint = input.extendedSequenceNumber();
        journal.event("\"ev\":\"init\",\"epoch\":" + Evidence.str(epoch) + ",\"shard\":" + Evidence.str(shard)
                + ",\"checkpoint\":" + Evidence.str(position(input.extendedSequenceNumber())));
    }

    @Override
    public void processRecords(ProcessRecordsInput input) {
        List<KinesisClientRecord> records = input.records();
        if (records.isEmpty()) {
            return;
        }
        long t = Evidence.nowMicros();
        StringBuilder lines = new StringBuilder(records.size() * 160);
        Base64.Encoder base64 = Base64.getEncoder();
        for (KinesisClientRecord record : records) {
            ByteBuffer data = record.data().duplicate();
            byte[] bytes = new byte[data.remaining()];
            data.get(bytes);
            lines.append("{\"worker\":").append(Evidence.str(worker))
                    .append(",\"shard\":").append(Evidence.str(shard))
                    .append(",\"seq\":").append(Evidence.str(record.sequenceNumber()))
                    .append(",\"sub\":").append(record.subSequenceNumber())
                    .append(",\"pk\":").append(Evidence.str(record.partitionKey()))
                    .append(",\"data_b64\":").append(Evidence.str(base64.encodeToString(bytes)))
                    .append(",\"epoch\":").append(Evidence.str(epoch))
                    .append(",\"t\":").append(t).append("}\n");
            recent.addLast(new ExtendedSequenceNumber(record.sequenceNumber(), record.subSequenceNumber()));
            while (recent.size() > holdBack + 1) {
                recent.removeFirst();
            }
        }
        try {
            // Durable first: a checkpoint must never cover a record that is not in the output.
            output.append(lines.toString());
        } catch (IOException e) {
            // Not processed: stop this worker's process rather than checkpoint past records that are not written.
            System.err.println("java-kcl-peer: cannot write the output, exiting: " + e);
            Runtime.getRuntime().halt(1);
        }
        if (recent.size() == holdBack + 1) {
            checkpoint(input.checkpointer(), recent.peekFirst());
        }
    }

    /** Checkpoints at {@code target} unless already there, journaling the attempt and its result. */
    private void checkpoint(RecordProcessorCheckpointer checkpointer, ExtendedSequenceNumber target) {
        if (target == null || (lastCheckpoint != null && !lastCheckpoint.isSentinelCheckpoint()
                && lastCheckpoint.compareTo(target) >= 0)) {
            return;
        }
        String pos = position(target);
        String head = "\"epoch\":" + Evidence.str(epoch) + ",\"shard\":" + Evidence.str(shard) + ",\"pos\":"
                + Evidence.str(pos);
        journal.event("\"ev\":\"cp\"," + head);
        boolean ok;
        try {
            if (target.equals(ExtendedSequenceNumber.SHARD_END)) {
                checkpointer.checkpoint();
            } else {
                checkpointer.checkpoint(target.sequenceNumber(), target.subSequenceNumber());
            }
            lastCheckpoint = target;
            ok = true;
        } catch (KinesisClientLibException | RuntimeException e) {
            // The next owner redelivers what is not checkpointed.
            System.err.println("java-kcl-peer: checkpoint of " + shard + " at " + pos + " failed: " + e);
            ok = false;
        }
        journal.event("\"ev\":\"cp_done\"," + head + ",\"ok\":" + ok);
    }

    private void end(String why) {
        journal.event("\"ev\":\"end\",\"epoch\":" + Evidence.str(epoch) + ",\"shard\":" + Evidence.str(shard)
                + ",\"why\":\"" + why + "\"");
    }

    @Override
    public void leaseLost(LeaseLostInput input) {
        end("lease_lost");
    }

    @Override
    public void shardEnded(ShardEndedInput input) {
        // Java KCL requires the application to checkpoint at shard end, or the children never start.
        checkpoint(input.checkpointer(), ExtendedSequenceNumber.SHARD_END);
        end("shard_ended");
    }

    @Override
    public void shutdownRequested(ShutdownRequestedInput input) {
        checkpoint(input.checkpointer(), recent.peekFirst());
        end("shutdown");
    }
}
