#!/usr/bin/env python3
"""Generate KPL aggregated-record test vectors with an independent encoder.

Encoder: PyPI `aws-kinesis-agg` 1.2.3 (awslabs/kinesis-aggregation), with `protobuf` 7.36.2 and `six` 1.17.0.
Its code is not part of this repository; only its output (the `.bin` blobs) and our source records are.

Usage (from this directory):
    python3 -m venv /tmp/kplvenv
    /tmp/kplvenv/bin/pip install aws-kinesis-agg==1.2.3 six
    /tmp/kplvenv/bin/python gen_kpl_vectors.py

Writes `kpl_<name>.bin` (the aggregated Kinesis record exactly as the encoder produced it) for every vector and
`kpl_vectors.json`, which lists, per vector, the blob's file name and the user records that went in:
partition key, explicit hash key (null when none was given), data (base64) and the effective hash key
(decimal; the explicit hash key, or MD5 of the UTF-8 partition key read as an unsigned big-endian integer).
The output is deterministic (fixed seed).
"""

import base64
import hashlib
import json
import random

from aws_kinesis_agg.aggregator import AggRecord

MAX_HASH_KEY = 2**128 - 1


def effective_hash_key(partition_key, explicit_hash_key):
    if explicit_hash_key is not None:
        return str(int(explicit_hash_key))
    digest = hashlib.md5(partition_key.encode("utf-8")).digest()
    return str(int.from_bytes(digest, "big"))


def build(records):
    agg = AggRecord()
    for pk, ehk, data in records:
        if not agg.add_user_record(pk, data, ehk):
            raise SystemExit("vector does not fit in one aggregated record")
    _pk, _ehk, blob = agg.get_contents()
    return blob


def vectors():
    rng = random.Random(20240611)
    out = {}
    out["several"] = [
        ("alpha", None, b"first record"),
        ("beta", None, b"second record"),
        ("alpha", None, b"third, same key as the first"),
        ("gamma", None, b"{\"json\": true}"),
    ]
    out["explicit_hash_key_some"] = [
        ("pk-0", None, b"no ehk"),
        ("pk-1", "0", b"ehk zero"),
        ("pk-2", None, b"no ehk again"),
        ("pk-3", str(MAX_HASH_KEY), b"ehk max"),
        ("pk-4", "170141183460469231731687303715884105728", b"ehk middle"),
        ("pk-1", "0", b"repeated pk and ehk"),
        ("pk-5", None, b"last, no ehk"),
    ]
    out["empty_data"] = [
        ("empty-1", None, b""),
        ("non-empty", None, b"x"),
        ("empty-2", "42", b""),
    ]
    out["binary"] = [
        ("bytes-asc", None, bytes(range(256))),
        ("bytes-desc", None, bytes(reversed(range(256)))),
        ("magic-inside", None, b"\xf3\x89\x9a\xc2" + bytes(range(16))),
    ]
    out["unicode_keys"] = [
        ("ключ", None, "данные".encode("utf-8")),
        ("键🔑", None, "数据".encode("utf-8")),
        ("e\u0301", None, b"decomposed e-acute"),
        ("\u00e9", None, b"composed e-acute"),
        ("🦀" * 64, None, b"long emoji key"),
        ("مفتاح", "12345678901234567890", b"rtl key with ehk"),
    ]
    large = []
    # Enough records and keys for multi-byte varints in every position (indices > 127, lengths > 16383).
    for i in range(600):
        pk = "user-%d" % rng.randrange(200)
        ehk = str(rng.randrange(MAX_HASH_KEY + 1)) if i % 7 == 3 else None
        size = 20000 if i == 300 else rng.choice([0, 1, 17, 60, 100, 130, 255])
        large.append((pk, ehk, bytes(rng.randrange(256) for _ in range(size))))
    out["large"] = large
    return out


def main():
    listing = []
    for name, records in vectors().items():
        blob = build(records)
        file_name = "kpl_%s.bin" % name
        with open(file_name, "wb") as f:
            f.write(blob)
        listing.append(
            {
                "name": name,
                "file": file_name,
                "records": [
                    {
                        "partition_key": pk,
                        "explicit_hash_key": ehk,
                        "data": base64.b64encode(data).decode("ascii"),
                        "effective_hash_key": effective_hash_key(pk, ehk),
                    }
                    for pk, ehk, data in records
                ],
            }
        )
    # One vector per line keeps the file small and diffs readable.
    with open("kpl_vectors.json", "w", encoding="utf-8") as f:
        f.write('{"encoder": "aws-kinesis-agg 1.2.3 (PyPI)", "vectors": [\n')
        f.write(",\n".join(json.dumps(v, ensure_ascii=False) for v in listing))
        f.write("\n]}\n")


if __name__ == "__main__":
    main()
