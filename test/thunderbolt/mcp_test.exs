defmodule Thunderbolt.MCPTest.BlockingTools do
  @moduledoc false
  # The built-in tools plus "block", which tells the test it has started and
  # then waits to be released: it makes the server's concurrency observable
  # without depending on how long anything takes.
  alias Thunderbolt.MCP.Tools

  def names, do: Tools.names() ++ ["block"]
  def instructions, do: Tools.instructions()
  def list(version), do: Tools.list(version)

  def call("block", %{"test" => test, "tag" => tag}, _opts) do
    test |> String.to_charlist() |> :erlang.list_to_pid() |> send({:blocked, self(), tag})

    receive do
      :release -> {:ok, %{"content" => [%{"type" => "text", "text" => tag}], "isError" => false}}
    end
  end

  def call(name, arguments, opts), do: Tools.call(name, arguments, opts)
end

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

    test "answers every request and returns at end of input", %{tmp_dir: dir} do
      File.cp!(TestModels.fixture("serving/tiny_text.onnx"), Path.join(dir, "tiny_text.onnx"))
      {:ok, input} = StringIO.open(lines(session_script()) <> "not json\n")
      {:ok, output} = StringIO.open("")

      assert Thunderbolt.MCP.serve(input: input, output: output, model_dir: dir) == :ok

      # The tool call (id 2) may finish after the requests behind it.
      replies = replies(output)
      assert [init, ping, parse_error] = Enum.reject(replies, &(&1["id"] == 2))
      assert [call] = Enum.filter(replies, &(&1["id"] == 2))
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

  describe "concurrent tool calls" do
    @describetag :tmp_dir

    alias Thunderbolt.MCPTest.BlockingTools

    defp block(id, tag) do
      test = self() |> :erlang.pid_to_list() |> List.to_string()
      arguments = %{"test" => test, "tag" => tag}

      %{
        "jsonrpc" => "2.0",
        "id" => id,
        "method" => "tools/call",
        "params" => %{"name" => "block", "arguments" => arguments}
      }
    end

    defp ping(id), do: %{"jsonrpc" => "2.0", "id" => id, "method" => "ping"}

    defp cancelled(id) do
      %{
        "jsonrpc" => "2.0",
        "method" => "notifications/cancelled",
        "params" => %{"requestId" => id, "reason" => "the user changed their mind"}
      }
    end

    defp start_server(dir, messages, opts) do
      {:ok, input} = StringIO.open(lines(Enum.take(session_script(), 2) ++ messages))
      {:ok, output} = StringIO.open("")
      opts = [input: input, output: output, model_dir: dir, tools: BlockingTools] ++ opts
      {:ok, server} = Thunderbolt.MCP.start_link(opts)
      {server, output}
    end

    # The replies written so far, without taking them from the device.
    defp written(output) do
      {_input, out} = StringIO.contents(output)
      out |> String.split("\n", trim: true) |> Enum.map(&:jiffy.decode(&1, [:return_maps]))
    end

    defp ids(output), do: output |> written() |> Enum.map(& &1["id"])

    defp await_stop(server) do
      ref = Process.monitor(server)
      assert_receive {:DOWN, ^ref, :process, _, :normal}, 5_000
    end

    test "a slow call holds up neither the requests nor the calls behind it", %{tmp_dir: dir} do
      {server, output} =
        start_server(dir, [block(2, "slow"), ping(3), block(4, "fast")], max_concurrency: 4)

      assert_receive {:blocked, slow, "slow"}, 5_000
      assert_receive {:blocked, fast, "fast"}, 5_000
      send(fast, :release)
      wait_until(fn -> ids(output) == [1, 3, 4] end)

      send(slow, :release)
      await_stop(server)
      assert ids(output) == [1, 3, 4, 2]

      assert List.last(written(output))["result"]["content"] == [
               %{"type" => "text", "text" => "slow"}
             ]
    end

    test "a cancelled call is stopped and gets no answer", %{tmp_dir: dir} do
      {server, output} =
        start_server(dir, [block(2, "never"), cancelled(2), ping(3)], max_concurrency: 4)

      # Nothing ever releases the call: the server can reach the end of its
      # input and stop only because the cancellation ended the call.
      await_stop(server)
      assert ids(output) == [1, 3]

      receive do
        {:blocked, call, "never"} -> refute Process.alive?(call)
      after
        0 -> :ok
      end
    end

    test "with max_concurrency calls running, no more input is read", %{tmp_dir: dir} do
      {server, output} = start_server(dir, [block(2, "only"), ping(3)], max_concurrency: 1)

      assert_receive {:blocked, only, "only"}, 5_000
      # Time the server could use to answer the ping, if it read on.
      Process.sleep(100)
      assert ids(output) == [1]

      send(only, :release)
      await_stop(server)
      assert ids(output) == [1, 2, 3]
    end

    test "a call that dies is answered with an internal error", %{tmp_dir: dir} do
      {server, output} = start_server(dir, [block(2, "victim"), ping(3)], max_concurrency: 4)

      assert_receive {:blocked, victim, "victim"}, 5_000
      Process.exit(victim, :kill)
      await_stop(server)

      assert [%{"id" => 1}, %{"id" => 3}, %{"id" => 2, "error" => %{"code" => -32603}}] =
               Enum.sort_by(written(output), &(&1["id"] == 2))
    end

    test "refuses a bad :max_concurrency or :tools", %{tmp_dir: dir} do
      assert_raise ArgumentError, ~r/max_concurrency/, fn ->
        Thunderbolt.MCP.serve(model_dir: dir, max_concurrency: 0)
      end

      assert_raise ArgumentError, ~r/:tools must be a module/, fn ->
        Thunderbolt.MCP.serve(model_dir: dir, tools: String)
      end
    end
  end

  defp wait_until(fun), do: TestModels.wait_until(fun, 200, 10)
end
