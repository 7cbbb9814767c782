defmodule Thunderbolt.MCPTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP, tags: [capture_log: true]

  alias Thunderbolt.TestModels

  @moduletag :capture_log

  defp lines(messages), do: Enum.map_join(messages, &(:jiffy.encode(&1) <> "\n"))

  defp replies(output) do
    output
    |> StringIO.flush()
    |> String.split("\n", trim: true)
    |> Enum.map(&:jiffy.decode(&1, [:return_maps, :use_nil]))
  end

  defp session_script do
    [
      %{
        "jsonrpc" => "2.0",
        "id" => 1,
        "method" => "initialize",
        "params" => %{"protocolVersion" => "2025-06-18", "capabilities" => %{}}
      },
      %{"jsonrpc" => "2.0", "method" => "notifications/initialized"},
      %{
        "jsonrpc" => "2.0",
        "id" => 2,
        "method" => "tools/call",
        "params" => %{
          "name" => "onnx_infer",
          "arguments" => %{
            "model" => "tiny_text.onnx",
            "input" => %{"data" => Enum.to_list(1..8)}
          }
        }
      },
      %{"jsonrpc" => "2.0", "id" => 3, "method" => "ping"}
    ]
  end

  describe "serve/1" do
    @describetag :tmp_dir

    test "answers each request in order and returns at end of input", %{tmp_dir: dir} do
      File.cp!(TestModels.fixture("serving/tiny_text.onnx"), Path.join(dir, "tiny_text.onnx"))
      {:ok, input} = StringIO.open(lines(session_script()) <> "not json\n")
      {:ok, output} = StringIO.open("")

      assert Thunderbolt.MCP.serve(input: input, output: output, model_dir: dir) == :ok

      assert [init, call, ping, parse_error] = replies(output)
      assert init["result"]["protocolVersion"] == "2025-06-18"
      assert call["result"]["structuredContent"]["predictions"]["logits"]["shape"] == [1, 6]
      assert ping == %{"jsonrpc" => "2.0", "id" => 3, "result" => %{}}
      assert parse_error["error"]["code"] == -32700
    end

    test "reads bytes as bytes: invalid UTF-8 is a parse error, UTF-8 passes through",
         %{tmp_dir: dir} do
      request = ~s({"jsonrpc":"2.0","id":"é","method":"ping"})
      {:ok, input} = StringIO.open(<<0xFF, 0xFE, ?\n>> <> request <> "\n")
      {:ok, output} = StringIO.open("")
      :ok = Thunderbolt.MCP.serve(input: input, output: output, model_dir: dir)
      assert [%{"error" => %{"code" => -32700}}, %{"id" => "é"}] = replies(output)
    end

    test "a last line without a newline is still answered", %{tmp_dir: dir} do
      {:ok, input} = StringIO.open(~s({"jsonrpc":"2.0","id":1,"method":"ping"}))
      {:ok, output} = StringIO.open("")
      :ok = Thunderbolt.MCP.serve(input: input, output: output, model_dir: dir)
      assert [%{"id" => 1, "result" => %{}}] = replies(output)
    end

    test "validates its options" do
      assert_raise ArgumentError, fn -> Thunderbolt.MCP.serve(model_dir: 42) end
      assert_raise ArgumentError, fn -> Thunderbolt.MCP.serve(port: 80) end
    end
  end

  describe "start_link/1" do
    @describetag :tmp_dir

    test "runs under a supervisor with its own devices and is not restarted after EOF",
         %{tmp_dir: dir} do
      File.cp!(TestModels.fixture("serving/tiny_text.onnx"), Path.join(dir, "tiny_text.onnx"))
      {:ok, input} = StringIO.open(lines(session_script()))
      {:ok, output} = StringIO.open("")
      name = :"mcp_#{System.unique_integer([:positive])}"

      {:ok, sup} =
        Supervisor.start_link(
          [{Thunderbolt.MCP, name: name, model_dir: dir, input: input, output: output}],
          strategy: :one_for_one
        )

      ref = Process.monitor(sup)
      # The server ends at EOF; :transient means the supervisor leaves it be.
      wait_until(fn -> Supervisor.count_children(sup).active == 0 end)
      assert [{^name, :undefined, :worker, [Thunderbolt.MCP]}] = Supervisor.which_children(sup)
      assert length(replies(output)) == 3
      refute_received {:DOWN, ^ref, _, _, _}
      Supervisor.stop(sup)
    end

    test "registers a name and refuses a name in use", %{tmp_dir: dir} do
      {:ok, input} = StringIO.open("")
      {:ok, output} = StringIO.open("")
      {:ok, idle} = StringIO.open("")
      name = :"mcp_#{System.unique_integer([:positive])}"
      Process.register(idle, name)

      assert {:error, {:already_registered, ^name}} =
               Thunderbolt.MCP.start_link(
                 name: name,
                 input: input,
                 output: output,
                 model_dir: dir
               )

      Process.unregister(name)
      Process.flag(:trap_exit, true)

      {:ok, pid} =
        Thunderbolt.MCP.start_link(name: name, input: input, output: output, model_dir: dir)

      assert_receive {:EXIT, ^pid, :normal}
    end
  end

  defp wait_until_later(fun, attempts) do
    Process.sleep(10)
    wait_until(fun, attempts - 1)
  end

  defp wait_until(fun, attempts \\ 200) do
    cond do
      fun.() -> :ok
      attempts == 0 -> flunk("condition not met in time")
      true -> wait_until_later(fun, attempts)
    end
  end
end
