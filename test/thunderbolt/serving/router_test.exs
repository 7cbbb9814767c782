defmodule Thunderbolt.Serving.RouterTest do
  # Real extra nodes, started with OTP's :peer on this machine. Not async:
  # the round-robin counter is node-wide, and the tests count where calls land.
  use ExUnit.Case, async: false
  @moduletag :distributed

  import Thunderbolt.TestModels
  alias Thunderbolt.{Serving, Tensor}
  alias Thunderbolt.Serving.Directory

  @model fixture("batching/dynamic_rows.onnx")

  setup_all do
    unless Node.alive?() do
      # Distribution needs epmd; starting it when it already runs is harmless.
      {_, 0} = System.cmd("epmd", ["-daemon"])
      # The OS pid keeps names apart when several test runs share a machine.
      {:ok, _} = Node.start(:"tb_test_#{System.pid()}@127.0.0.1", :longnames)
    end

    %{session: Thunderbolt.load!(@model)}
  end

  setup do
    %{name: {__MODULE__, make_ref()}}
  end

  # A node with this test run's code paths (so also the NIF in priv/) and
  # the :thunderbolt application started. `-connect_all false` keeps peers
  # from meshing with each other, so stopping one does not make `global`
  # cut the others off to prevent overlapping partitions.
  defp start_peer do
    name = :"tb_peer_#{System.pid()}_#{System.unique_integer([:positive])}"
    args = [~c"-connect_all", ~c"false" | Enum.flat_map(:code.get_path(), &[~c"-pa", &1])]

    {:ok, peer, node} =
      :peer.start(%{name: name, host: ~c"127.0.0.1", longnames: true, args: args})

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:thunderbolt])
    on_exit(fn -> if Process.alive?(peer), do: :peer.stop(peer) end)
    {peer, node}
  end

  defp start_remote_serving(node, name, opts \\ []) do
    spec = {Serving, Keyword.merge([name: name, model: @model, runners: 1], opts)}
    {:ok, _pid} = :erpc.call(node, Supervisor, :start_child, [Thunderbolt.Supervisor, spec])
    wait_until(fn -> node in Directory.remote_nodes(name) end)
  end

  defp remote_requests(node, name) do
    {:ok, stats} = :erpc.call(node, Serving, :stats, [name])
    stats.requests
  end

  defp input(i), do: Tensor.new([[i * 1.0, 2.0, 3.0], [4.0, 5.0, i * -1.0]], type: :f32)

  describe "run/4" do
    test "sends a call to the node that has the serving", %{name: name, session: session} do
      {_peer, node} = start_peer()
      assert Serving.run(name, input(1)) == {:error, :no_serving}

      start_remote_serving(node, name)

      assert Serving.run(name, input(1)) == Thunderbolt.run(session, input(1))

      assert Serving.run(name, input(2), outputs: ["row_sum"], timeout: 5_000) ==
               Thunderbolt.run(session, input(2), outputs: ["row_sum"])

      assert remote_requests(node, name) == 2
      assert Serving.stats(name) == {:error, :no_serving}
    end

    test "goes round-robin over the nodes that have the serving", %{name: name} do
      {_, a} = start_peer()
      {_, b} = start_peer()
      start_remote_serving(a, name)
      start_remote_serving(b, name)

      for i <- 1..10, do: assert({:ok, _} = Serving.run(name, input(i)))

      assert remote_requests(a, name) == 5
      assert remote_requests(b, name) == 5
    end

    test "prefers a serving on this node", %{name: name} do
      {_, node} = start_peer()
      start_remote_serving(node, name)
      start_supervised!({Serving, name: name, model: @model, runners: 1})

      for i <- 1..4, do: assert({:ok, _} = Serving.run(name, input(i)))

      assert {:ok, %{requests: 4}} = Serving.stats(name)
      assert remote_requests(node, name) == 0
    end

    test "passes the remote serving's errors back", %{name: name} do
      {_, node} = start_peer()
      start_remote_serving(node, name)

      assert {:error, %Thunderbolt.Error{kind: :invalid_input}} =
               Serving.run(name, Tensor.new([[1, 2]], type: :s64))
    end

    test "when a node goes down, calls move to the others; with none left, :no_serving", %{
      name: name
    } do
      {peer_a, a} = start_peer()
      {peer_b, b} = start_peer()
      start_remote_serving(a, name)
      start_remote_serving(b, name)

      :ok = :peer.stop(peer_a)
      for i <- 1..6, do: assert({:ok, _} = Serving.run(name, input(i)))
      assert remote_requests(b, name) == 6

      :ok = :peer.stop(peer_b)
      # Until :pg has processed the nodedown, the call finds the node gone.
      assert Serving.run(name, input(1)) in [{:error, :no_serving}, {:error, {:nodedown, b}}]
      wait_until(fn -> Directory.remote_nodes(name) == [] end)
      assert Serving.run(name, input(1)) == {:error, :no_serving}
    end

    test "a call in flight on a node that goes down is answered by another node", %{
      name: name,
      session: session
    } do
      {peer_a, a} = start_peer()
      start_remote_serving(a, name)

      # Hold a's runner so the call is in flight there when a goes down.
      [runner] = :erpc.call(a, Supervisor, :which_children, [runner_supervisor(a, name)])
      :ok = :erpc.call(a, :sys, :suspend, [elem(runner, 1)])
      call = Task.async(fn -> Serving.run(name, input(7), timeout: 30_000) end)

      wait_until(fn ->
        :erpc.call(a, Serving, :stats, [name]) |> elem(1) |> Map.get(:requests) == 1
      end)

      # A node that joins while the call waits is a candidate for the retry.
      {_, b} = start_peer()
      start_remote_serving(b, name)
      :ok = :peer.stop(peer_a)

      assert Task.await(call, 30_000) == Thunderbolt.run(session, input(7))
      assert remote_requests(b, name) == 1
    end

    test "a node that joins later is found", %{name: name} do
      assert Serving.run(name, input(1)) == {:error, :no_serving}
      {_, node} = start_peer()
      start_remote_serving(node, name)
      assert {:ok, _} = Serving.run(name, input(1))
    end

    test "an OnnxInference tool call with :serving reaches a serving on another node", %{
      name: name
    } do
      {_, node} = start_peer()
      dir = fixture("serving")
      start_remote_serving(node, name, model: Path.join(dir, "tiny_text.onnx"))
      input = %{"data" => Enum.to_list(1..8)}

      assert {:ok, served} =
               Thunderbolt.OnnxInference.infer("tiny_text.onnx", input, %{},
                 serving: name,
                 model_dir: dir
               )

      assert {:ok, direct} =
               Thunderbolt.OnnxInference.infer("tiny_text.onnx", input, %{}, model_dir: dir)

      # One row alone in its batch: the same computation as the direct run.
      assert served.predictions == direct.predictions
      assert remote_requests(node, name) == 1
    end

    test "a serving started with distributed: false is not offered to other nodes", %{
      name: name
    } do
      {_, node} = start_peer()
      spec = {Serving, name: name, model: @model, runners: 1, distributed: false}
      {:ok, _} = :erpc.call(node, Supervisor, :start_child, [Thunderbolt.Supervisor, spec])
      assert {:ok, _} = :erpc.call(node, Serving, :run, [name, input(1)])
      assert Serving.run(name, input(1)) == {:error, :no_serving}
    end
  end

  defp runner_supervisor(node, name) do
    {_, serving, _, _} =
      node
      |> :erpc.call(Supervisor, :which_children, [Thunderbolt.Supervisor])
      |> List.keyfind({Serving, name}, 0)

    {:runners, sup, _, _} =
      node |> :erpc.call(Supervisor, :which_children, [serving]) |> List.keyfind(:runners, 0)

    sup
  end
end
