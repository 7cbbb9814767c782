defmodule Thunderbolt.MCP.StdioTest do
  # The raw protocol through the real transport: `mix thunderbolt.mcp` as an
  # OS process, a file of lines on its stdin, its stdout and stderr captured.
  use ExUnit.Case, async: true

  alias Thunderbolt.TestModels

  @moduletag :tmp_dir
  @moduletag timeout: 180_000

  defp message(id, method, params \\ nil) do
    base = %{"jsonrpc" => "2.0", "method" => method}
    base = if id, do: Map.put(base, "id", id), else: base
    base = if params, do: Map.put(base, "params", params), else: base
    :jiffy.encode(base)
  end

  # Runs the server on `lines` until their end; returns the exit status,
  # stdout's lines and stderr.
  defp run_server(dir, lines) do
    input = Path.join(dir, "stdin.jsonl")
    File.write!(input, Enum.map(lines, &[&1, ?\n]))
    stdout = Path.join(dir, "stdout")
    stderr = Path.join(dir, "stderr")
    mix = System.find_executable("mix")

    {_, status} =
      System.cmd(
        "sh",
        [
          "-c",
          ~s(exec "$0" thunderbolt.mcp --no-compile --model-dir "$1" < "$2" > "$3" 2> "$4"),
          mix,
          dir,
          input,
          stdout,
          stderr
        ],
        env: [{"MIX_ENV", Atom.to_string(Mix.env())}]
      )

    {status, File.read!(stdout) |> String.split("\n", trim: true), File.read!(stderr)}
  end

  test "every reply is one JSON line on stdout, errors have the right codes, and EOF ends it",
       %{tmp_dir: dir} do
    File.cp!(TestModels.fixture("serving/tiny_text.onnx"), Path.join(dir, "tiny_text.onnx"))
    # 10 MB of one message, written the way the Python SDK orders keys.
    huge_data = String.duplicate("1,", 5_000_000) <> "1"

    huge =
      ~s({"method":"tools/call","params":{"name":"onnx_infer","arguments":{"model":"tiny_text.onnx","input":{"data":[#{huge_data}]}}},"jsonrpc":"2.0","id":"huge"})

    lines = [
      message("probe", "server/discover"),
      message(1, "initialize", %{"protocolVersion" => "2025-06-18", "capabilities" => %{}}),
      message(nil, "notifications/initialized"),
      ~s({"jsonrpc":"2.0","id":2,"method":"tools/list"),
      message(3, "ping"),
      message(4, "sampling/createMessage"),
      message(5, "ping"),
      message(6, "tools/call", %{"name" => 42, "arguments" => %{}}),
      message(7, "tools/call", %{"name" => "onnx_infer", "arguments" => "tiny_text.onnx"}),
      message(8, "ping"),
      huge,
      message(9, "ping"),
      <<0xFF, 0xFE, 0xFD>>,
      message(10, "tools/call", %{
        "name" => "onnx_infer",
        "arguments" => %{
          "model" => "tiny_text.onnx",
          "input" => %{"data" => [1, 2, 3, 4, 5, 6, 7, 8]}
        }
      }),
      message(11, "ping")
    ]

    assert byte_size(huge) > 10_000_000
    {status, out, err} = run_server(dir, lines)

    assert status == 0, "exit status #{status}; stderr:\n#{err}"
    assert err =~ "input closed"
    replies = Enum.map(out, &:jiffy.decode(&1, [:return_maps, :use_nil]))

    summary =
      Enum.map(replies, fn reply ->
        {reply["id"], if(reply["error"], do: reply["error"]["code"], else: :ok)}
      end)

    # Tool calls run concurrently and are answered when they finish; every
    # other reply keeps its request's order.
    {calls, others} = Enum.split_with(summary, &(elem(&1, 0) == 10))
    assert calls == [{10, :ok}]

    assert others == [
             {"probe", -32601},
             {1, :ok},
             {nil, -32700},
             {3, :ok},
             {4, -32601},
             {5, :ok},
             {6, -32602},
             {7, -32602},
             {8, :ok},
             {"huge", -32600},
             {9, :ok},
             {nil, -32700},
             {11, :ok}
           ]

    by_id = Map.new(replies, &{&1["id"], &1})
    assert by_id[1]["result"]["protocolVersion"] == "2025-06-18"
    assert by_id["huge"]["error"]["message"] =~ "exceeds the limit"
    assert by_id[10]["result"]["isError"] == false
    assert by_id[10]["result"]["structuredContent"]["predictions"]["logits"]["shape"] == [1, 6]
  end

  test "--max-message-bytes lowers the limit (and --max-concurrency is taken)", %{tmp_dir: dir} do
    input = Path.join(dir, "stdin.jsonl")

    File.write!(
      input,
      message(1, "ping") <>
        "\n" <> message(2, "ping", %{"pad" => String.duplicate("x", 200)}) <> "\n"
    )

    out = Path.join(dir, "out")
    mix = System.find_executable("mix")

    {_, 0} =
      System.cmd(
        "sh",
        [
          "-c",
          ~s(exec "$0" thunderbolt.mcp --no-compile --model-dir "$1" --max-message-bytes 100 --max-concurrency 1 < "$2" > "$3" 2>/dev/null),
          mix,
          dir,
          input,
          out
        ],
        env: [{"MIX_ENV", Atom.to_string(Mix.env())}]
      )

    assert [%{"id" => 1, "result" => %{}}, %{"id" => 2, "error" => %{"code" => -32600}}] =
             out
             |> File.read!()
             |> String.split("\n", trim: true)
             |> Enum.map(&:jiffy.decode(&1, [:return_maps]))
  end
end
