// A record processor for aws-kcl (npm), the Node.js MultiLangDaemon client, used by kcl-multilang's tests.
// It does what the sample consumer of amazon-kinesis-client-nodejs does (the npm package ships no sample):
// log every record, checkpoint at the last record of every batch, checkpoint again at shard end and on shutdown.
// It logs to stderr, which the daemon forwards to its own log with the shard id.
//
//   executableName = node sample_kcl_app.js
'use strict';

const kcl = require('aws-kcl');

function recordProcessor() {
  let shardId;
  const log = (message) => process.stderr.write(message + '\n');

  return {
    initialize(initializeInput, completeCallback) {
      shardId = initializeInput.shardId;
      log(`initialize shard=${shardId} at=${initializeInput.sequenceNumber}`);
      completeCallback();
    },

    processRecords(processRecordsInput, completeCallback) {
      const records = (processRecordsInput && processRecordsInput.records) || [];
      let sequenceNumber;
      for (const record of records) {
        const data = Buffer.from(record.data, 'base64').toString();
        sequenceNumber = record.sequenceNumber;
        log(`ShardID: ${shardId}, Record: ${data.length} bytes, SequenceNumber: ${sequenceNumber}, SubSequenceNumber: ${record.subSequenceNumber}, PartitionKey: ${record.partitionKey}`);
      }
      if (!sequenceNumber) {
        completeCallback();
        return;
      }
      processRecordsInput.checkpointer.checkpoint(sequenceNumber, (err, checkpointed) => {
        log(err ? `Checkpoint failed: ${err}` : `Checkpoint successful. ShardID: ${shardId}, SequenceNumber: ${checkpointed}`);
        completeCallback();
      });
    },

    leaseLost(leaseLostInput, completeCallback) {
      log(`Lease was lost for ShardId: ${shardId}`);
      completeCallback();
    },

    shardEnded(shardEndedInput, completeCallback) {
      log(`ShardId: ${shardId} has ended. Will checkpoint now.`);
      shardEndedInput.checkpointer.checkpoint((err) => {
        log(err ? `Checkpoint at shard end failed: ${err}` : `Checkpoint at shard end: ${shardId}`);
        completeCallback();
      });
    },

    shutdownRequested(shutdownRequestedInput, completeCallback) {
      shutdownRequestedInput.checkpointer.checkpoint((err) => {
        log(err ? `Checkpoint on shutdown failed: ${err}` : `Checkpoint on shutdown: ${shardId}`);
        completeCallback();
      });
    },
  };
}

kcl(recordProcessor()).run();
