#!/usr/bin/env python3
"""Writes the small committed seed corpus in fuzz/seeds/<target>/ (run from fuzz/)."""
import json, os, struct

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF

def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF

def record(data):
    n = struct.pack("<Q", len(data))
    return n + struct.pack("<I", masked(n)) + data + struct.pack("<I", masked(data))

def varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80]); v >>= 7
    return out + bytes([v])

def field_bytes(n, data):
    return varint(n << 3 | 2) + varint(len(data)) + data

def event(step, value):
    ev = b"\x09" + struct.pack("<d", 1.7e9) + varint(2 << 3) + varint(step)
    return frame(ev + field_bytes(5, field_bytes(1, value)))

def simple(tag, v):
    return field_bytes(1, tag.encode()) + bytes([2 << 3 | 5]) + struct.pack("<f", v)

def tensor(tag, dtype, content):
    t = varint(1 << 3) + varint(dtype) + field_bytes(2, b"") + field_bytes(4, content)
    return field_bytes(1, tag.encode()) + field_bytes(8, t)

def write(target, name, data):
    os.makedirs(f"seeds/{target}", exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(f"seeds/{target}/{name}", "wb") as f:
        f.write(data)

tb = record(field_bytes(3, b"brain.Event:2"))
framed = b""  # the same events as u16-length-prefixed payloads (see tfrecords in src/lib.rs)
def frame(payload):
    global framed
    framed += struct.pack("<H", len(payload)) + payload
    return record(payload)

for s in range(1, 4):
    tb += event(s, simple("lm loss", 10.0 - s))
    tb += event(s * 32, simple("lm loss vs samples", 10.0 - s))
    tb += event(s, tensor("grad-norm", 2, struct.pack("<d", 0.5 * s)))
    tb += event(s, tensor("lr", 19, struct.pack("<e", 1e-3)))
golden = json.dumps({
    "lm loss": {"start_step": 1, "end_step": 5, "step_interval": 2,
                "values": {"1": 10.8, "3": 10.7, "5": "nan"}},
    "num-zeros": {"start_step": 1, "end_step": 5, "step_interval": 2,
                  "values": {"1": 3, "3": 4, "5": 5}},
    "iteration-time": {"values": {"1": 1.5, "3": 1.25, "5": 1.0}},
})
mlog = "".join(
    f" [2024-05-01 10:00:{i:02}] iteration {i:8}/     100 | consumed samples: {i*32:12} | "
    f"elapsed time per iteration (ms): 1234.5 | learning rate: 1.500000E-04 | lm loss: {10.8 - i/10:.6E} | "
    f"loss scale: 1.0 | grad norm: 2.345 | number of skipped iterations:   0 |\n"
    for i in range(1, 4)) + "[after training is done] datetime: 2024-05-01\n"
titan = "".join(
    f"[titan] 2024-05-01 10:00:0{i} INFO - step: {i:2}  loss: {12.25 - i:.4f}  memory: 45.23GiB(47.63%)  tps: 1,234  mfu: 3.21%\n"
    for i in range(1, 4)) + "1 2.5\n2 2.4\n"
jsonl = "".join(json.dumps({"step": i, "train/loss": 2.5 - i / 10, "lr": 1e-3, "grad_norm": "nan" if i == 3 else 1.0}) + "\n" for i in range(1, 4))
csv = "\ufeffStep,train/loss,train/loss__MIN,lr\n1,2.5,2.4,0.001\n2,2.25,,0.001\n3,nan,2.0,0.001\n"
trace = json.dumps({
    "schema_version": 1, "name": "run", "origin": {"format": "lossdiff", "path": None},
    "config": {"model": {"attention": "naive"}}, "fingerprint": {}, "seeds": {"init": 1},
    "loss_floor": None, "steps": [1, 2, 3],
    "series": {"lm_loss": {"precision": "f32", "values": [3.5, "nan", "inf"]},
               "grad_norm": {"precision": "f64", "values": [0.1, 0.2, 0.30000000000000004]}},
})
run_spec = 'train_iters=30\npreset = "gate"\n[model]\nattention = "flash"\n[train]\ntrain_iters = 50\nlr_decay_style = "WSD"\nlr_wsd_decay_iters = 10\n[data]\nsource = "synthetic"\n'
for t, items in {
    "import_tensorboard": {"events": tb, "framed": framed},
    "import_megatron_golden": {"golden.json": golden},
    "import_megatron_log": {"log.txt": mlog},
    "import_torchtitan": {"titan.log": titan},
    "import_jsonl": {"metrics.jsonl": jsonl},
    "import_csv": {"wandb.csv": csv},
    "import_auto": {"events": tb, "golden.json": golden, "log.txt": mlog, "titan.log": titan,
                    "metrics.jsonl": jsonl, "wandb.csv": csv, "trace.json": trace},
    "trace_json": {"trace.json": trace},
    "run_spec": {"spec.toml": run_spec},
}.items():
    for name, data in items.items():
        write(t, name, data)
for name in sorted(os.listdir("../experiments")):
    write("experiment_spec", name, open(f"../experiments/{name}").read())
    if name in ("gate.toml", "small.toml"):
        write("run_spec", name, open(f"../experiments/{name}").read())
