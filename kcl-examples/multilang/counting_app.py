#!/usr/bin/env python3
"""An amazon-kclpy record processor for the kcl-multilang vs Java MultiLangDaemon benchmark: both daemons run this
same program. Per batch it appends `<unix time> <records>` to `$KCL_BENCH_OUT/<shard id>` (how the benchmark sees
progress without parsing daemon logs) and checkpoints at the batch's last record, as production apps do; on
shutdown and at shard end it checkpoints too."""
import os
import sys
import time

from amazon_kclpy import kcl
from amazon_kclpy.v3 import processor


class CountingProcessor(processor.RecordProcessorBase):
    def __init__(self):
        self._out = None

    def initialize(self, initialize_input):
        path = os.path.join(os.environ["KCL_BENCH_OUT"], initialize_input.shard_id)
        self._out = open(path, "a", buffering=1)

    def process_records(self, process_records_input):
        records = process_records_input.records
        if not records:
            return
        for record in records:
            record.binary_data  # decode, as a real application would
        self._out.write("{:.6f} {}\n".format(time.time(), len(records)))
        last = records[-1]
        try:
            process_records_input.checkpointer.checkpoint(last.sequence_number, last.sub_sequence_number)
        except kcl.CheckpointError as error:
            sys.stderr.write("checkpoint failed: {}\n".format(error.value))

    def lease_lost(self, lease_lost_input):
        pass

    def shard_ended(self, shard_ended_input):
        shard_ended_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input):
        shutdown_requested_input.checkpointer.checkpoint()


if __name__ == "__main__":
    kcl.KCLProcess(CountingProcessor()).run()
