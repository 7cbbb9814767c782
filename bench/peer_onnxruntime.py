"""The peer for the runtime benchmark: Python onnxruntime's
InferenceSession.run on the same model, input and thread settings.

    .venv/bin/python bench/peer_onnxruntime.py MODEL ITERATIONS

Prints one JSON object: p50/p99 microseconds at batch 1 and batch 32.
"""
import json
import sys
import time

import numpy as np
import onnxruntime as ort


def main():
    model = sys.argv[1]
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    report = {}
    for batch in (1, 32):
        ids = (np.arange(batch * 40) % 1000).astype(np.int64).reshape(batch, 40)
        runs = iterations if batch == 1 else iterations // 4
        times = []
        for i in range(runs + runs // 10):
            started = time.perf_counter_ns()
            sess.run(["logits"], {"input_ids": ids})
            if i >= runs // 10:
                times.append((time.perf_counter_ns() - started) / 1000.0)
        times.sort()
        pct = lambda p: times[int((len(times) - 1) * p)]
        report[f"b{batch}"] = {"p50": round(pct(0.5), 2), "p99": round(pct(0.99), 2), "n": len(times)}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
