"""MCP round trips through the official client: `tools/call onnx_infer` at
batch 1 on cerebros_trained.onnx, against the client's own cost for calls
that do no inference.

    .venv/bin/python bench/mcp_bench.py [--iterations 2000] [--model PATH]

The official MCP Python SDK (PyPI `mcp`, pinned in scripts/requirements.txt)
starts `mix thunderbolt.mcp --model-dir <temp dir>` over stdio, with the
model copied into a fresh temporary directory, and times each request from
the client's call to its parsed, validated result, in one process, with the
three kinds of request interleaved so that drift hits them alike:

  * `onnx_infer`  tools/call onnx_infer on one row of 40 token ids; the SDK
                  also validates the structured result against the tool's
                  outputSchema, as it does for every successful call;
  * `ping`        the protocol's own no-op request: transport, JSON-RPC and
                  the SDK's request machinery, no tool code;
  * `noop_tool`   tools/call onnx_infer naming a model that does not exist:
                  the whole tools/call path (argument checks, path
                  confinement, an isError result) without loading or running
                  anything.

It prints percentiles for each, then onnx_infer's p50 minus each baseline's
p50, and two parts of that difference measured on their own: the server's
measure of the inference (`duration_ms` in the result, OnnxInference's wall
time inside the server) and the client's check of the result against the
tool's outputSchema (`jsonschema.validate`, which the SDK calls on every
successful tools/call that has an outputSchema), timed here on the last
result.
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time

import jsonschema
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(os.path.dirname(ROOT), "shared", "models", "cerebros_trained.onnx")
IDS = [[(i * 37) % 1000 for i in range(1, 41)]]


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def row(name, samples_us):
    return (
        f"{name:<12} {percentile(samples_us, 50):>9.1f} {percentile(samples_us, 90):>9.1f} "
        f"{percentile(samples_us, 99):>9.1f} {statistics.fmean(samples_us):>9.1f} {len(samples_us):>7}"
    )


async def timed(coro):
    start = time.perf_counter_ns()
    result = await coro
    return (time.perf_counter_ns() - start) / 1000.0, result


async def bench(args, model_dir, log):
    server = StdioServerParameters(
        command="mix",
        args=["thunderbolt.mcp", "--model-dir", model_dir],
        cwd=ROOT,
        env=dict(os.environ),
    )
    infer_args = {"model": os.path.basename(args.model), "input": {"data": IDS}}
    missing_args = {"model": "no_such_model.onnx", "input": {"data": IDS}}
    samples = {"onnx_infer": [], "ping": [], "noop_tool": []}
    server_ms = []

    async with stdio_client(server, errlog=log) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}

            for i in range(args.warmup + args.iterations):
                t_infer, result = await timed(session.call_tool("onnx_infer", infer_args))
                t_ping, _ = await timed(session.send_ping())
                t_noop, noop = await timed(session.call_tool("onnx_infer", missing_args))

                if result.isError or not noop.isError:
                    sys.exit(f"unexpected result: {result} / {noop}")

                if i >= args.warmup:
                    samples["onnx_infer"].append(t_infer)
                    samples["ping"].append(t_ping)
                    samples["noop_tool"].append(t_noop)
                    server_ms.append(result.structuredContent["duration_ms"])

    # The SDK's per-call output validation, on its own.
    schema = tools["onnx_infer"].outputSchema
    validate_us = []
    for _ in range(200):
        start = time.perf_counter_ns()
        jsonschema.validate(result.structuredContent, schema)
        validate_us.append((time.perf_counter_ns() - start) / 1000.0)

    return init.protocolVersion, samples, server_ms, validate_us


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()

    if not os.path.exists(args.model):
        sys.exit(f"{args.model} is missing (the reference models live in ../shared/models)")

    model_dir = tempfile.mkdtemp(prefix="thunderbolt_mcp_bench_")
    try:
        shutil.copy(args.model, model_dir)
        with open(os.path.join(model_dir, "server.log"), "w") as log:
            version, samples, server_ms, validate_us = asyncio.run(bench(args, model_dir, log))
    finally:
        shutil.rmtree(model_dir, ignore_errors=True)

    print(f"MCP {version} over stdio, official client mcp (Python), model {os.path.basename(args.model)}, batch 1")
    print(f"{os.cpu_count()} CPUs, {args.iterations} interleaved rounds after {args.warmup} warm-up rounds\n")
    print(f"{'round trip':<12} {'p50 us':>9} {'p90 us':>9} {'p99 us':>9} {'mean us':>9} {'n':>7}")
    for name in ["onnx_infer", "ping", "noop_tool"]:
        print(row(name, samples[name]))

    infer = percentile(samples["onnx_infer"], 50)
    print()
    print(f"onnx_infer p50 - ping p50      = {infer - percentile(samples['ping'], 50):9.1f} us")
    print(f"onnx_infer p50 - noop_tool p50 = {infer - percentile(samples['noop_tool'], 50):9.1f} us")
    print(f"  of which, measured alone:")
    print(f"  server OnnxInference p50     = {percentile(server_ms, 50) * 1000:9.1f} us (duration_ms in the results)")
    print(f"  client jsonschema.validate   = {percentile(validate_us, 50):9.1f} us (p50 of 200, on the last result)")


if __name__ == "__main__":
    main()
