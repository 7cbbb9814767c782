defmodule Thunderbolt.ServingTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.Serving

  import Thunderbolt.TestModels
  alias Thunderbolt.{Error, Native, Serving, Tensor}
  alias Thunderbolt.Serving.{Directory, Request}

  @dynamic fixture("batching/dynamic_rows.onnx")
  @shared_input fixture("batching/shared_input.onnx")

  # Helpers. Waiting here is synchronisation on observable state (polled,
  # with a generous bound), never a timing assertion.

  defp start_serving(opts) do
    name = {__MODULE__, make_ref()}
    pid = start_supervised!({Serving, Keyword.put(opts, :name, name)})
    {name, pid}
  end

  defp queue(name) do
    {:ok, pid, _info} = Directory.lookup(name)
    pid
  end

  defp runners(serving) do
    {:runners, sup, _, _} = List.keyfind(Supervisor.which_children(serving), :runners, 0)
    for {_, pid, _, _} <- Supervisor.which_children(sup), is_pid(pid), do: pid
  end

  defp queued(name), do: stats!(name).queue_depth

  defp stats!(name) do
    {:ok, stats} = Serving.stats(name)
    stats
  end

  # Serves every input at once and checks each answer against the same
  # input run alone on `session`; returns the results.
  defp run_all_like_alone(name, session, inputs) do
    results =
      inputs
      |> Enum.map(&Task.async(fn -> Serving.run(name, &1, timeout: 30_000) end))
      |> Task.await_many(60_000)

    for {input, result} <- Enum.zip(inputs, results) do
      assert {:ok, %{"logits" => logits}} = result
      %{"logits" => alone} = Thunderbolt.run!(session, input)
      assert logits.shape == alone.shape
      # Batched matrix products may round differently from single-row ones.
      assert_close(Tensor.to_flat_list(logits), Tensor.to_flat_list(alone), rtol: 1.0e-5)
    end

    results
  end

  # Holds the (only) runner between two batches, so that the next request
  # and the ones after it wait in the queue; returns the runner.
  defp hold_runner(serving, name, first_input) do
    [runner] = runners(serving)
    :ok = :sys.suspend(runner)
    first = Task.async(fn -> Serving.run(name, first_input) end)
    wait_until(fn -> queued(name) == 1 end)
    {runner, first}
  end

  defp rows(n, width, seed),
    do: Tensor.new(for(r <- 1..n, do: for(c <- 1..width, do: seed * 1.0 + r - c / 4)), type: :f32)

  # A native queue for @dynamic with no runner processes: a test plays the
  # runners by calling run_once/2, so no BEAM timer can wake one.
  defp native_queue(batch_timeout_us) do
    Native.serving_new(%{
      batch_axes: [true],
      batch_size: 32,
      batch_timeout_us: batch_timeout_us,
      max_queue: 10
    })
  end

  # What a runner does for one batch.
  defp run_once(queue, session), do: Thunderbolt.Serving.Runner.run_once(queue, session)

  # 64 MB of rows: a batch that runs for tens of milliseconds.
  defp long_batch do
    Tensor.from_binary(
      :binary.copy(<<1.5::float-32-native>>, 8 * 2_000_000),
      :f32,
      {2_000_000, 8}
    )
  end

  # Runs `attempt` (which returns park_and_wait/3's answer) until its runner
  # parked, at most five times: a runner that ran at once found the long
  # batch already ended, which tests nothing.
  defp until_parked(attempt) do
    Enum.find_value(1..5, fn _ ->
      case attempt.() do
        {_ran, :not_parked} -> nil
        parked -> parked
      end
    end)
  end

  # Runs run_once/2 in a task that then, if it parked, waits up to `ms` for
  # a wake-up.
  defp park_and_wait(queue, session, ms) do
    Task.async(fn ->
      case run_once(queue, session) do
        {:idle, _} = parked ->
          receive do
            :"$thunderbolt_serving_wake" -> {parked, :woken}
          after
            ms -> {parked, :not_woken}
          end

        ran ->
          {ran, :not_parked}
      end
    end)
  end

  describe "start_link/1" do
    test "refuses bad options with a clear error" do
      assert {:error, %Error{kind: :invalid_option, message: ":batch_size must be" <> _}} =
               Serving.start_link(name: :bad, model: @dynamic, batch_size: 0)

      assert {:error, %Error{kind: :invalid_option, message: ":name is required"}} =
               Serving.start_link(model: @dynamic)
    end

    test "refuses a model that does not load" do
      assert {:error, %Error{kind: :load}} =
               Serving.start_link(name: :missing, model: "/no/such/model.onnx")

      assert {:error, %Error{kind: :load}} =
               Serving.start_link(name: :garbage, model: {:binary, "not a model"})
    end

    test "refuses a second serving with the same name on this node" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)

      assert {:error, %Error{kind: :invalid_option, message: message}} =
               Serving.start_link(name: name, model: @dynamic)

      assert message =~ "already runs on this node"
    end

    test "starts one runner per scheduler by default, each with a session of its own" do
      {name, pid} = start_serving(model: @dynamic)
      assert length(runners(pid)) == System.schedulers_online()
      assert stats!(name).runners == System.schedulers_online()

      sessions = for runner <- runners(pid), do: :sys.get_state(runner).session.resource
      assert length(Enum.uniq(sessions)) == length(sessions)
    end

    test "accepts a loaded session, shared by the runners" do
      session = Thunderbolt.load!(@dynamic, pool_size: 2)
      {name, _pid} = start_serving(model: session, runners: 2)
      x = rows(2, 3, 1)
      assert Serving.run(name, x) == Thunderbolt.run(session, x)
    end
  end

  describe "child_spec/1" do
    test "is keyed by the serving's name, so one supervisor can hold several" do
      assert %{id: {Serving, :a}, type: :supervisor} = Serving.child_spec(name: :a, model: "m")
      start_serving(model: @dynamic, runners: 1)
      start_serving(model: @dynamic, runners: 1)
    end
  end

  describe "run/3" do
    test "returns the same outputs as Thunderbolt.run on the input alone" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)
      session = Thunderbolt.load!(@dynamic)
      x = rows(3, 5, 2)
      assert {:ok, %{"doubled" => _, "row_sum" => _}} = result = Serving.run(name, x)
      assert result == Thunderbolt.run(session, x)
      assert Serving.run(name, %{"x" => x}) == result
      assert Serving.run(name, [x]) == result
    end

    test "a tensor struct with data that is not a binary is an error, not a crash" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)
      x = rows(2, 3, 1)

      assert {:error, %Error{kind: :invalid_input, message: message}} =
               Serving.run(name, %Tensor{x | data: [1.0, 2.0]})

      assert message =~ "input 0: its data is not a binary"
      assert {:ok, _} = Serving.run(name, x)
    end

    test "hand-built structs with a bad type or shape get Thunderbolt.run's error" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)
      session = Thunderbolt.load!(@dynamic)
      x = rows(2, 3, 1)

      for bad <- [
            %{x | type: nil},
            %{x | type: {:f, 7}},
            %{x | shape: [2, 3]},
            %{x | shape: {:a, 3}}
          ] do
        assert {:error, %Error{kind: :invalid_input}} = result = Serving.run(name, bad)
        assert result == Thunderbolt.run(session, bad)
      end

      assert {:ok, _} = Serving.run(name, x)
    end

    test "200 concurrent callers with mixed row counts and widths each get exactly their rows" do
      {name, _pid} = start_serving(model: @dynamic, runners: 2, batch_size: 16)
      session = Thunderbolt.load!(@dynamic)

      inputs = for i <- 1..200, do: rows(rem(i, 5) + 1, rem(i, 3) + 2, i)
      # One request larger than batch_size: it runs alone, whole.
      inputs = [rows(40, 2, 999) | inputs]

      results =
        inputs
        |> Enum.map(&Task.async(fn -> Serving.run(name, &1, timeout: 30_000) end))
        |> Task.await_many(60_000)

      for {input, result} <- Enum.zip(inputs, results) do
        assert result == Thunderbolt.run(session, input)
      end

      stats = stats!(name)
      assert stats.batched_requests == length(inputs)
      assert stats.rows == inputs |> Enum.map(&elem(&1.shape, 0)) |> Enum.sum()
      assert stats.queue_depth == 0
    end

    @tag :shared_models
    test "200 concurrent callers of cerebros_trained.onnx get what Thunderbolt.run gives each" do
      path = shared("cerebros_trained.onnx")
      {name, _pid} = start_serving(model: path, runners: 2)
      session = Thunderbolt.load!(path)

      inputs =
        for i <- 1..200 do
          n = rem(i, 4) + 1

          Tensor.new(for(r <- 1..n, do: for(c <- 1..40, do: rem(i * 31 + r * 7 + c, 1000))),
            type: :s64
          )
        end

      results = run_all_like_alone(name, session, inputs)
      assert length(results) == 200
      assert stats!(name).batched_requests == 200
    end

    @tag :shared_models
    test "cerebros_mini.onnx: the positional table is shared by a batch, the token ids stacked" do
      path = shared("cerebros_mini.onnx")
      {name, _pid} = start_serving(model: path, runners: 2)
      session = Thunderbolt.load!(path)
      table = Tensor.new(for(r <- 1..40, do: for(c <- 1..64, do: (r - c) / 64)), type: :f32)

      inputs =
        for i <- 1..40 do
          ids = for(r <- 1..(rem(i, 3) + 1), do: for(c <- 1..40, do: rem(i * 13 + r + c, 1000)))
          %{"input_ids" => Tensor.new(ids, type: :s32), "functional_1/Add/y:0" => table}
        end

      results = run_all_like_alone(name, session, inputs)
      assert length(results) == 40
    end

    test "requests that arrive while the runners are busy run as one batch" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))

      waiting = for i <- 1..5, do: Task.async(fn -> Serving.run(name, rows(i, 2, i)) end)
      wait_until(fn -> queued(name) == 6 end)
      :sys.resume(runner)

      assert {:ok, _} = Task.await(first)
      for task <- waiting, do: assert({:ok, _} = Task.await(task))

      stats = stats!(name)
      assert stats.batches == 1
      assert stats.batched_requests == 6
      assert stats.rows == 1 + 15
      assert stats.mean_batch_requests == 6.0
    end

    # How a partial batch waits while another runs is tested on the native
    # queue itself (native/thunderbolt_runtime/src/batch_queue.rs), where a
    # batch can be held running.

    test "a runner parked behind a long batch is woken when a partial batch falls due" do
      session = Thunderbolt.load!(@dynamic, pool_size: 1)
      small = rows(1, 8, 3)

      # The runner must park while the long batch still runs. On a loaded
      # machine the batch may end first; then the small request goes at
      # once (run_once answers :ok), which says nothing about the timer, and
      # the scenario is tried again on a fresh queue.
      attempt = fn ->
        queue = native_queue(500)
        # Never run before, so its length is unknown: the timer is armed.
        {:ok, big_id} = Native.serving_submit(queue, [long_batch()], nil)
        busy = Task.async(fn -> run_once(queue, session) end)
        wait_until(fn -> Native.serving_stats(queue).queue_depth == 0 end)

        # Another key (one output of two), so it waits for its batch timeout.
        {:ok, small_id} = Native.serving_submit(queue, [small], [1])
        parked = Task.await(park_and_wait(queue, session, 10_000), 15_000)

        if match?({{:idle, _}, _}, parked), do: assert(:ok = run_once(queue, session))
        assert_receive {:"$thunderbolt_serving", ^small_id, {:ok, outputs}}, 15_000
        assert {:ok, ^outputs} = Thunderbolt.run(session, small, outputs: ["row_sum"])
        assert :ok = Task.await(busy, 60_000)
        assert_receive {:"$thunderbolt_serving", ^big_id, {:ok, %{"doubled" => _}}}, 60_000
        parked
      end

      result = until_parked(attempt)

      assert {{:idle, us}, :woken} = result
      assert is_integer(us)
    end

    # The timer is for batches that outlast a deadline; a batch measured to
    # end first makes the waiting one ready itself when it ends (in a real
    # serving its runner then takes it), so the timer stays quiet.
    @tag :slow
    test "no timer wake-up when the running batch is expected to end before the deadline" do
      session = Thunderbolt.load!(@dynamic, pool_size: 1)
      queue = native_queue(1_000_000)
      big = long_batch()

      # Run once, so that its length is measured.
      {:ok, first_id} = Native.serving_submit(queue, [big], nil)
      :ok = run_once(queue, session)
      assert_receive {:"$thunderbolt_serving", ^first_id, {:ok, _}}, 60_000

      # As in the test above, a runner that finds the long batch already
      # ended runs the small request at once; that attempt is repeated.
      attempt = fn ->
        {:ok, big_id} = Native.serving_submit(queue, [big], nil)
        busy = Task.async(fn -> run_once(queue, session) end)
        wait_until(fn -> Native.serving_stats(queue).queue_depth == 0 end)
        {:ok, small_id} = Native.serving_submit(queue, [rows(1, 8, 3)], [1])

        parked = Task.await(park_and_wait(queue, session, 1_500), 15_000)
        assert :ok = Task.await(busy, 60_000)
        assert_receive {:"$thunderbolt_serving", ^big_id, {:ok, _}}, 60_000

        # With nothing running, the waiting request goes at once.
        if match?({{:idle, _}, _}, parked), do: assert(:ok = run_once(queue, session))
        assert_receive {:"$thunderbolt_serving", ^small_id, {:ok, %{"row_sum" => _}}}, 15_000
        parked
      end

      result = until_parked(attempt)

      assert {{:idle, _}, :not_woken} = result
    end

    test "a batch takes at most batch_size rows, oldest first" do
      {name, pid} =
        start_serving(model: @dynamic, runners: 1, batch_size: 4, batch_timeout: 60_000_000)

      session = Thunderbolt.load!(@dynamic)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))
      inputs = for i <- 1..5, do: rows(1, 2, i)

      waiting =
        for x <- inputs, do: Task.async(fn -> Serving.run(name, x, timeout: :infinity) end)

      wait_until(fn -> queued(name) == 6 end)
      :sys.resume(runner)

      assert {:ok, _} = Task.await(first)

      for {x, task} <- Enum.zip(inputs, waiting) do
        assert Task.await(task) == Thunderbolt.run(session, x)
      end

      assert %{batches: 2, batched_requests: 6, rows: 6} = stats!(name)
    end

    test "requests with different non-batch shapes are not merged" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))
      session = Thunderbolt.load!(@dynamic)

      inputs = [rows(1, 3, 1), rows(2, 4, 2), rows(1, 3, 3), rows(2, 4, 4), rows(1, 3, 5)]
      waiting = for x <- inputs, do: Task.async(fn -> Serving.run(name, x) end)
      wait_until(fn -> queued(name) == 6 end)
      :sys.resume(runner)
      Task.await(first)

      for {x, task} <- Enum.zip(inputs, waiting) do
        assert Task.await(task) == Thunderbolt.run(session, x)
      end

      # One batch of width 2 (the first request), one of width 3, one of 4.
      assert stats!(name).batches == 3
    end

    test "an input with a fixed leading dimension merges only when equal" do
      {name, pid} = start_serving(model: @shared_input, runners: 1)
      session = Thunderbolt.load!(@shared_input)
      w = Tensor.new(for(i <- 1..4, do: [i * 1.0, -1.0, 0.5]), type: :f32)
      other_w = Tensor.new(List.duplicate([2.0, 0.0, 1.0], 4), type: :f32)
      {runner, first} = hold_runner(pid, name, [rows(1, 4, 0), w])

      inputs = [[rows(2, 4, 1), w], [rows(1, 4, 2), other_w], [rows(3, 4, 3), w]]
      waiting = for x <- inputs, do: Task.async(fn -> Serving.run(name, x) end)
      wait_until(fn -> queued(name) == 4 end)
      :sys.resume(runner)
      Task.await(first)

      for {x, task} <- Enum.zip(inputs, waiting) do
        assert Task.await(task) == Thunderbolt.run(session, x)
      end

      # The three requests with w in one batch, the one with other_w alone.
      assert stats!(name).batches == 2
    end

    test "computes only the requested outputs" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)
      assert {:ok, result} = Serving.run(name, rows(2, 2, 1), outputs: [:row_sum])
      assert Map.keys(result) == ["row_sum"]
    end

    test "refuses bad inputs and options in the caller, leaving the serving untouched" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)

      assert {:error, %Error{kind: :invalid_input}} =
               Serving.run(name, Tensor.new([[1, 2]], type: :s64))

      assert {:error, %Error{kind: :invalid_input}} =
               Serving.run(name, rows(1, 2, 0), outputs: ["nope"])

      assert {:error, %Error{kind: :invalid_option}} =
               Serving.run(name, rows(1, 2, 0), timeout: -1)

      # Beyond what receive ... after takes, which raised.
      assert {:error, %Error{kind: :invalid_option, message: ":timeout must be" <> _}} =
               Serving.run(name, rows(1, 2, 0), timeout: 10 ** 30)

      assert {:error, %Error{kind: :invalid_option}} = Serving.run(name, rows(1, 2, 0), batch: 1)
      assert {:error, %Error{kind: :invalid_option}} = Serving.run(name, rows(1, 2, 0), :nope)

      assert stats!(name).requests == 0
      assert {:ok, _} = Serving.run(name, rows(1, 2, 0))
    end

    test "a lone caller is sent on at once, with the default timeout and a long one" do
      for batch_timeout <- [200, 50_000] do
        {name, _pid} = start_serving(model: @dynamic, runners: 1, batch_timeout: batch_timeout)
        # The call's own timeout is far above either batch_timeout: the bound
        # holds with room for a loaded machine.
        assert {:ok, _} = Serving.run(name, rows(1, 2, 0), timeout: 5_000)
        assert stats!(name).batches == 1
      end
    end

    @tag :shared_models
    test "a request the model rejects fails alone, not the batch it was in" do
      path = shared("cerebros_trained.onnx")
      {name, pid} = start_serving(model: path, runners: 1)
      good = Tensor.new([Enum.to_list(1..40)], type: :s64)
      bad = Tensor.new([List.duplicate(5000, 40)], type: :s64)
      {runner, first} = hold_runner(pid, name, good)

      tasks = for x <- [good, bad, good], do: Task.async(fn -> Serving.run(name, x) end)
      wait_until(fn -> queued(name) == 4 end)
      :sys.resume(runner)

      assert {:ok, expected} = Task.await(first)

      assert [{:ok, ^expected}, {:error, %Error{kind: :onnxruntime}}, {:ok, ^expected}] =
               Task.await_many(tasks)

      assert stats!(name).fallbacks == 1
    end
  end

  describe "run/3 under back-pressure" do
    test "a full queue answers :overloaded at once, and the waiting calls still complete" do
      {name, pid} = start_serving(model: @dynamic, runners: 1, max_queue: 2)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))

      waiting = [Task.async(fn -> Serving.run(name, rows(1, 2, 1)) end)]
      wait_until(fn -> queued(name) == 2 end)

      assert Serving.run(name, rows(1, 2, 9)) == {:error, :overloaded}
      assert stats!(name).rejected == 1
      assert stats!(name).queue_depth == 2

      :sys.resume(runner)
      for task <- [first | waiting], do: assert({:ok, _} = Task.await(task))
      assert stats!(name).queue_depth == 0
      assert {:ok, _} = Serving.run(name, rows(1, 2, 9))
    end

    test "a call that times out returns :timeout and its request is dropped, not run" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))

      assert Serving.run(name, rows(1, 2, 1), timeout: 20) == {:error, :timeout}
      :sys.resume(runner)
      assert {:ok, _} = Task.await(first)
      wait_until(fn -> stats!(name).queue_depth == 0 end)

      stats = stats!(name)
      assert stats.timed_out == 1
      assert stats.skipped == 1
      assert stats.batched_requests == 1
      # Nothing arrived late in this mailbox.
      refute_received _
    end

    test "a caller that died while queued is skipped" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))

      caller = spawn(fn -> Serving.run(name, rows(1, 2, 1)) end)
      wait_until(fn -> queued(name) == 2 end)
      Process.exit(caller, :kill)
      :sys.resume(runner)
      assert {:ok, _} = Task.await(first)
      wait_until(fn -> stats!(name).queue_depth == 0 end)

      assert stats!(name).skipped == 1
      assert stats!(name).batched_requests == 1
    end
  end

  describe "run/3 when things fail" do
    # A runner runs and answers each batch inside one NIF call: killing its
    # process mid-batch does not stop the batch, whose callers are still
    # answered. The path where a batch is abandoned unanswered (a panic in
    # the NIF) is tested on the native queue with an injected failure
    # (batch_queue.rs): its callers get {:runner_down, :nif_panicked}.
    test "a runner killed while callers wait: they are served by its replacement" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))

      waiting = for i <- 1..3, do: Task.async(fn -> Serving.run(name, rows(1, 2, i)) end)
      wait_until(fn -> queued(name) == 4 end)
      Process.exit(runner, :kill)

      for task <- [first | waiting], do: assert({:ok, _} = Task.await(task))

      [replacement] = runners(pid)
      assert replacement != runner
      stats = stats!(name)
      assert stats.runner_crashes == 1
      assert stats.runners == 1
    end

    test "no request is lost or answered twice while runners are killed under load" do
      {name, pid} = start_serving(model: @dynamic, runners: 2, batch_size: 8)
      session = Thunderbolt.load!(@dynamic)
      {:ok, _queue, info} = Directory.lookup(name)

      # Submit natively from this one process, so that a second answer to
      # any request would land in this mailbox.
      sent =
        for i <- 1..300 do
          input = rows(rem(i, 3) + 1, rem(i, 2) + 2, i)
          {:ok, native, nil} = Request.new(info.inputs, info.outputs, input, nil)
          {:ok, id} = Native.serving_submit(info.native, native, nil)

          if rem(i, 50) == 0 do
            # Kill a runner that the queue owner knows, not one still starting.
            kills = div(i, 50) - 1
            wait_until(fn -> match?(%{runners: 2, runner_crashes: ^kills}, stats!(name)) end)
            pid |> runners() |> Enum.random() |> Process.exit(:kill)
          end

          {id, input}
        end

      for {id, input} <- sent do
        receive do
          {:"$thunderbolt_serving", ^id, {:ok, _} = ok} ->
            assert ok == Thunderbolt.run(session, input)
        after
          30_000 -> flunk("request #{id} lost")
        end
      end

      # Once nothing is queued, every answer has been sent: none may follow.
      wait_until(fn -> stats!(name).queue_depth == 0 end)
      wait_until(fn -> match?(%{runners: 2, runner_crashes: 6}, stats!(name)) end)
      ids = MapSet.new(sent, &elem(&1, 0))
      {:messages, messages} = Process.info(self(), :messages)

      assert Enum.filter(messages, &match?({:"$thunderbolt_serving", _, _}, &1)) == [],
             "answered twice: #{inspect(Enum.filter(messages, &(elem(&1, 1) in ids)))}"

      assert stats!(name).batched_requests == 300
    end

    test "many callers with mixed shapes and short timeouts: each gets one answer or :timeout" do
      {name, _pid} = start_serving(model: @dynamic, runners: 2, batch_size: 8)
      session = Thunderbolt.load!(@dynamic)

      results =
        1..300
        |> Enum.map(fn i ->
          input = rows(rem(i, 4) + 1, rem(i, 3) + 2, i)
          timeout = if rem(i, 3) == 0, do: 0, else: 30_000

          Task.async(fn ->
            result = Serving.run(name, input, timeout: timeout)
            # Nothing may arrive after the call returned, answer or not.
            Process.sleep(20)
            {:messages, late} = Process.info(self(), :messages)
            {input, result, late}
          end)
        end)
        |> Task.await_many(60_000)

      for {input, result, late} <- results do
        assert late == []
        assert result == {:error, :timeout} or result == Thunderbolt.run(session, input)
      end

      timeouts = Enum.count(results, &match?({_, {:error, :timeout}, _}, &1))
      wait_until(fn -> stats!(name).queue_depth == 0 end)
      stats = stats!(name)
      assert stats.timed_out == timeouts
      assert stats.requests == 300
      # Each request either ran or was withdrawn while queued.
      assert stats.batched_requests + stats.skipped == 300
    end

    test "a queue owner that dies fails its waiting callers; the new one takes calls with new runners" do
      {name, pid} = start_serving(model: @dynamic, runners: 1)
      {runner, first} = hold_runner(pid, name, rows(1, 2, 0))
      waiting = Task.async(fn -> Serving.run(name, rows(1, 2, 1)) end)
      wait_until(fn -> queued(name) == 2 end)
      old_queue = queue(name)

      Process.exit(old_queue, :kill)

      assert Task.await(first) == {:error, {:serving_down, :killed}}
      assert Task.await(waiting) == {:error, {:serving_down, :killed}}
      wait_until(fn -> match?({:ok, %{runners: 1}}, Serving.stats(name)) end)
      assert queue(name) != old_queue
      assert [new_runner] = runners(pid)
      assert new_runner != runner
      assert {:ok, _} = Serving.run(name, rows(2, 2, 2))
    end

    test "callers waiting when the serving stops get an error" do
      name = {__MODULE__, make_ref()}
      {:ok, pid} = Serving.start_link(name: name, model: @dynamic, runners: 2)
      Process.unlink(pid)
      [a, b] = runners(pid)
      :ok = :sys.suspend(a)
      :ok = :sys.suspend(b)
      waiting = for i <- 1..3, do: Task.async(fn -> Serving.run(name, rows(1, 2, i)) end)
      wait_until(fn -> queued(name) == 3 end)

      Supervisor.stop(pid)

      for task <- waiting, do: assert(Task.await(task) == {:error, {:serving_down, :shutdown}})
      assert Serving.run(name, rows(1, 2, 1)) == {:error, :no_serving}
    end

    test "a serving whose runners wait in the NIF stops without waiting for them" do
      name = {__MODULE__, make_ref()}
      {:ok, pid} = Serving.start_link(name: name, model: @dynamic, runners: 2)
      Process.unlink(pid)
      assert {:ok, _} = Serving.run(name, rows(1, 2, 1))
      ref = Process.monitor(pid)
      Supervisor.stop(pid)
      assert_received {:DOWN, ^ref, :process, ^pid, _}
      assert Serving.run(name, rows(1, 2, 1)) == {:error, :no_serving}
    end
  end

  describe "stats/1" do
    test "counts batches, rows and requests" do
      {name, _pid} = start_serving(model: @dynamic, runners: 1)
      for n <- [1, 2, 3], do: {:ok, _} = Serving.run(name, rows(n, 2, n))

      assert %{
               requests: 3,
               batches: 3,
               rows: 6,
               mean_batch_size: 2.0,
               queue_depth: 0,
               rejected: 0,
               timed_out: 0,
               runners: 1
             } = stats!(name)
    end
  end
end
