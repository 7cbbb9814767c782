defmodule Thunderbolt.ModelServerTest do
  use ExUnit.Case, async: true

  alias Thunderbolt.{ModelServer, Session, Tensor, TestModels}

  @tiny TestModels.fixture("serving/tiny_text.onnx")
  @positional TestModels.fixture("serving/positional.onnx")

  # Each test gets its own server (checking files on every use unless it
  # says otherwise) and its own directory of model files.
  setup context do
    dir = Path.join(System.tmp_dir!(), "tb_model_server_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)

    name = :"model_server_#{System.unique_integer([:positive])}"
    opts = Keyword.merge([name: name, revalidate_ms: 0], Map.get(context, :server_opts, []))
    start_supervised!({ModelServer, opts})
    %{server: name, dir: dir}
  end

  defp model(dir, name, source \\ @tiny) do
    path = Path.join(dir, name)
    File.cp!(source, path)
    path
  end

  # Replaces the file by renaming a new one over it, as deployments should.
  defp replace(path, source) do
    tmp = path <> ".new"
    File.cp!(source, tmp)
    File.rename!(tmp, path)
  end

  defp ids, do: Tensor.new([Enum.to_list(1..8)], type: :s64)

  describe "fetch/3" do
    test "loads on first use, then serves the same session from the cache", ctx do
      path = model(ctx.dir, "a.onnx")

      assert {:ok, %Session{} = session} = ModelServer.fetch(path, [], ctx.server)
      assert {:ok, ^session} = ModelServer.fetch(path, [], ctx.server)
      assert {:ok, ^session} = ModelServer.fetch(path, [], ctx.server)

      assert %{loads: 1, misses: 1, hits: 2, models: 1} = ModelServer.stats(ctx.server)
      assert {:ok, %{"logits" => %Tensor{shape: {1, 6}}}} = Thunderbolt.run(session, ids())
    end

    test "each set of load options is its own entry, in any order", ctx do
      path = model(ctx.dir, "a.onnx")

      {:ok, plain} = ModelServer.fetch(path, [], ctx.server)

      {:ok, tuned} =
        ModelServer.fetch(path, [pool_size: 1, optimization_level: :basic], ctx.server)

      {:ok, same} =
        ModelServer.fetch(path, [optimization_level: :basic, pool_size: 1], ctx.server)

      assert plain.resource != tuned.resource
      assert same.resource == tuned.resource
      assert tuned.options[:optimization_level] == :basic
      assert %{loads: 2, models: 2} = ModelServer.stats(ctx.server)
    end

    test "a relative path is made absolute", ctx do
      relative = Path.relative_to_cwd(@tiny)
      assert relative != @tiny
      {:ok, session} = ModelServer.fetch(relative, [], ctx.server)
      assert {:ok, ^session} = ModelServer.fetch(@tiny, [], ctx.server)
      assert [%{path: @tiny}] = ModelServer.list_models(ctx.server)
    end

    test "many processes asking at once cause one load", ctx do
      path = model(ctx.dir, "a.onnx")
      parent = self()

      tasks =
        for _ <- 1..64 do
          Task.async(fn ->
            send(parent, {:ready, self()})

            receive do
              :go -> ModelServer.fetch(path, [], ctx.server)
            end
          end)
        end

      pids = for _ <- tasks, do: receive(do: ({:ready, pid} -> pid))
      Enum.each(pids, &send(&1, :go))
      results = Task.await_many(tasks, 30_000)

      assert [{:ok, %Session{resource: resource}} | _] = results
      assert Enum.all?(results, &match?({:ok, %Session{resource: ^resource}}, &1))
      assert %{loads: 1, load_errors: 0, models: 1} = ModelServer.stats(ctx.server)
    end

    test "a file that fails to load gives every waiting caller the error, and is not cached",
         ctx do
      path = Path.join(ctx.dir, "broken.onnx")
      File.write!(path, "this is not an ONNX model")

      results =
        1..8
        |> Enum.map(fn _ -> Task.async(fn -> ModelServer.fetch(path, [], ctx.server) end) end)
        |> Task.await_many(30_000)

      assert Enum.all?(results, &match?({:error, %Thunderbolt.Error{kind: :load}}, &1))
      assert %{models: 0, loads: 0} = ModelServer.stats(ctx.server)
      assert ModelServer.stats(ctx.server).load_errors >= 1

      # Fixed on disk, it loads.
      replace(path, @tiny)
      assert {:ok, %Session{}} = ModelServer.fetch(path, [], ctx.server)
    end

    test "invalid load options are an error, not a crash", ctx do
      path = model(ctx.dir, "a.onnx")

      for opts <- [[pool_size: 0], [{:pool_size, 1} | :more], :pool_size] do
        assert {:error, %Thunderbolt.Error{kind: :invalid_option}} =
                 ModelServer.fetch(path, opts, ctx.server)
      end

      assert {:ok, _} = ModelServer.fetch(path, [], ctx.server)
    end

    test "a value that is not a path is an error, not a raise", ctx do
      for path <- [nil, 42, :x, [1 | 2], [-1], %{}] do
        assert {:error, {:invalid_path, ^path}} = ModelServer.fetch(path, [], ctx.server)
        assert {:error, {:invalid_path, ^path}} = ModelServer.preload(path, [], ctx.server)
        assert {:error, {:invalid_path, ^path}} = ModelServer.evict(path, ctx.server)
      end

      # A charlist is a path.
      path = model(ctx.dir, "a.onnx")
      assert {:ok, _} = ModelServer.fetch(String.to_charlist(path), [], ctx.server)
    end

    test "a missing path or a directory is not found", ctx do
      missing = Path.join(ctx.dir, "missing.onnx")
      assert ModelServer.fetch(missing, [], ctx.server) == {:error, {:file_not_found, missing}}
      assert ModelServer.fetch(ctx.dir, [], ctx.server) == {:error, {:file_not_found, ctx.dir}}
      assert %{misses: 0, loads: 0} = ModelServer.stats(ctx.server)
    end

    test "a server that is not running is an error" do
      assert ModelServer.fetch(@tiny, [], :no_such_model_server) ==
               {:error, {:model_server_not_running, :no_such_model_server}}

      assert {:error, {:model_server_not_running, _}} = ModelServer.stats(:no_such_model_server)
      assert ModelServer.list_models(:no_such_model_server) == []
    end
  end

  describe "fetch/3 when files change" do
    test "a changed file is loaded again on its next use", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, old} = ModelServer.fetch(path, [], ctx.server)
      assert [%{name: "input_ids"}] = old.inputs

      replace(path, @positional)
      {:ok, new} = ModelServer.fetch(path, [], ctx.server)

      assert Enum.map(new.inputs, & &1.name) == ["input_ids", "positions"]
      assert %{loads: 2, reloads: 1, models: 1} = ModelServer.stats(ctx.server)
      # The old session still works for whoever holds it.
      assert {:ok, _} = Thunderbolt.run(old, ids())
    end

    test "a rewrite in place that keeps the size is seen at once", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, old} = ModelServer.fetch(path, [], ctx.server)
      assert old.metadata.producer == "thunderbolt-fixtures"

      # Same inode, same size, well within the same second: only the
      # nanosecond times tell the two versions apart.
      bytes = File.read!(path)
      rewritten = :binary.replace(bytes, "thunderbolt-fixtures", "thunderbolt-REWRITES")
      assert byte_size(rewritten) == byte_size(bytes) and rewritten != bytes
      File.write!(path, rewritten)

      {:ok, new} = ModelServer.fetch(path, [], ctx.server)
      assert new.metadata.producer == "thunderbolt-REWRITES"
      assert %{loads: 2, reloads: 1} = ModelServer.stats(ctx.server)
      assert [%{mtime: mtime}] = ModelServer.list_models(ctx.server)
      assert_in_delta mtime, System.os_time(:second), 5
    end

    test "a model file deleted while cached is evicted and reported missing", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, session} = ModelServer.fetch(path, [], ctx.server)
      {:ok, _} = ModelServer.fetch(path, [pool_size: 1], ctx.server)

      File.rm!(path)

      assert ModelServer.fetch(path, [], ctx.server) == {:error, {:file_not_found, path}}
      assert ModelServer.list_models(ctx.server) == []
      assert %{models: 0, evictions: 2} = ModelServer.stats(ctx.server)
      assert {:ok, _} = Thunderbolt.run(session, ids())

      # Put back, it loads again.
      model(ctx.dir, "a.onnx")
      assert {:ok, %Session{}} = ModelServer.fetch(path, [], ctx.server)
    end

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "with :revalidate_ms the file is not checked again before that time", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, old} = ModelServer.fetch(path, [], ctx.server)

      replace(path, @positional)
      assert {:ok, ^old} = ModelServer.fetch(path, [], ctx.server)
      File.rm!(path)
      assert {:ok, ^old} = ModelServer.fetch(path, [], ctx.server)
      assert %{loads: 1, hits: 2} = ModelServer.stats(ctx.server)
    end
  end

  describe "LRU eviction" do
    @tag server_opts: [max_models: 2]
    test "loading one model too many evicts the least recently used", ctx do
      [a, b, c] = for name <- ["a.onnx", "b.onnx", "c.onnx"], do: model(ctx.dir, name)

      {:ok, _} = ModelServer.fetch(a, [], ctx.server)
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)
      # a is now more recent than b.
      {:ok, _} = ModelServer.fetch(a, [], ctx.server)
      {:ok, _} = ModelServer.fetch(c, [], ctx.server)

      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [c, a]
      assert %{models: 2, evictions: 1, loads: 3} = ModelServer.stats(ctx.server)

      # b comes back with a load, and evicts a, now the least recent.
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [b, c]
      assert %{models: 2, evictions: 2, loads: 4} = ModelServer.stats(ctx.server)
    end
  end

  describe "preload/3" do
    test "loads ahead, so the first fetch is a hit", ctx do
      path = model(ctx.dir, "a.onnx")
      assert ModelServer.preload(path, [], ctx.server) == :ok
      assert {:ok, _} = ModelServer.fetch(path, [], ctx.server)
      assert %{loads: 1, hits: 1} = ModelServer.stats(ctx.server)

      missing = Path.join(ctx.dir, "missing.onnx")
      assert ModelServer.preload(missing, [], ctx.server) == {:error, {:file_not_found, missing}}
    end
  end

  describe "evict/2" do
    test "drops every entry of a path and nothing else", ctx do
      a = model(ctx.dir, "a.onnx")
      b = model(ctx.dir, "b.onnx")
      {:ok, _} = ModelServer.fetch(a, [], ctx.server)
      {:ok, _} = ModelServer.fetch(a, [pool_size: 1], ctx.server)
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)

      assert ModelServer.evict(a, ctx.server) == :ok
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [b]
      assert ModelServer.evict(Path.join(ctx.dir, "never_loaded.onnx"), ctx.server) == :ok

      {:ok, _} = ModelServer.fetch(a, [], ctx.server)
      assert %{loads: 4, evictions: 2} = ModelServer.stats(ctx.server)
    end
  end

  describe "list_models/1" do
    test "describes each entry, most recent first", ctx do
      a = model(ctx.dir, "a.onnx")
      b = model(ctx.dir, "b.onnx", @positional)
      {:ok, _} = ModelServer.fetch(a, [pool_size: 1], ctx.server)
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)

      assert [
               %{path: ^b, load_opts: [], size: b_size, mtime: mtime, loaded_at: %DateTime{}},
               %{path: ^a, load_opts: [pool_size: 1], size: a_size}
             ] = ModelServer.list_models(ctx.server)

      assert b_size == File.stat!(@positional).size
      assert a_size == File.stat!(@tiny).size
      assert mtime == File.stat!(b, time: :posix).mtime
    end
  end

  describe "resolve/3" do
    @tag server_opts: [revalidate_ms: 3_600_000]
    test "remembers a resolution until the path is evicted or found gone", ctx do
      path = model(ctx.dir, "a.onnx")
      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) == {:ok, path}

      File.rm!(path)
      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) == {:ok, path}
      ModelServer.evict(path, ctx.server)

      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) ==
               {:error, {:file_not_found, "a.onnx"}}
    end

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "never remembers a refusal or a missing file", ctx do
      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) ==
               {:error, {:file_not_found, "a.onnx"}}

      path = model(ctx.dir, "a.onnx")
      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) == {:ok, path}

      assert ModelServer.resolve("../a.onnx", ctx.dir, ctx.server) ==
               {:error, {:forbidden_path, "../a.onnx"}}
    end

    test "checks the file system every time with revalidate_ms 0", ctx do
      path = model(ctx.dir, "a.onnx")
      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) == {:ok, path}
      File.rm!(path)

      assert ModelServer.resolve("a.onnx", ctx.dir, ctx.server) ==
               {:error, {:file_not_found, "a.onnx"}}
    end
  end

  describe "fetch_named/5" do
    defp ok(_path), do: :ok

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "one entry for resolve, check and fetch, counted as a hit", ctx do
      path = model(ctx.dir, "a.onnx")

      assert {:ok, ^path, session} =
               ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)

      # Gone from the disk, but within :revalidate_ms: served from the entry.
      File.rm!(path)

      assert {:ok, ^path, ^session} =
               ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)

      assert %{loads: 1, misses: 1, hits: 1} = ModelServer.stats(ctx.server)
    end

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "an eviction or a load makes every entry stale at once", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, ^path, _} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)

      ModelServer.evict(path, ctx.server)
      replace(path, @positional)
      assert {:ok, ^path, new} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      assert Enum.map(new.inputs, & &1.name) == ["input_ids", "positions"]

      # A load of another model also moves the generation on; the entry is
      # made again from the same cached session, with no load.
      {:ok, _} = ModelServer.fetch(model(ctx.dir, "b.onnx"), [], ctx.server)

      assert {:ok, ^path, ^new} =
               ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)

      assert %{loads: 3} = ModelServer.stats(ctx.server)
    end

    test "a changed file is loaded again on its next use", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, ^path, old} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      replace(path, @positional)
      {:ok, ^path, new} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      assert old != new
      assert %{loads: 2, reloads: 1} = ModelServer.stats(ctx.server)
    end

    @tag server_opts: [max_models: 1, revalidate_ms: 3_600_000]
    test "a model evicted as least recently used is loaded again", ctx do
      a = model(ctx.dir, "a.onnx")
      {:ok, ^a, first} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      {:ok, _} = ModelServer.fetch(model(ctx.dir, "b.onnx"), [], ctx.server)
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) != [a]

      {:ok, ^a, again} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      assert again != first
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [a]
    end

    @tag server_opts: [max_models: 2, revalidate_ms: 3_600_000]
    test "hits keep the model recently used", ctx do
      a = model(ctx.dir, "a.onnx")
      b = model(ctx.dir, "b.onnx")
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)
      {:ok, _} = ModelServer.fetch(a, [], ctx.server)
      {:ok, ^a, _} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      {:ok, _} = ModelServer.fetch(b, [], ctx.server)
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [b, a]

      # A hit on a's entry (no load since it was made) makes a the more recent.
      {:ok, ^a, _} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      assert Enum.map(ModelServer.list_models(ctx.server), & &1.path) == [a, b]
      assert %{loads: 2, hits: 3} = ModelServer.stats(ctx.server)
    end

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "an entry made while the cache changed is not trusted", ctx do
      path = model(ctx.dir, "a.onnx")
      {:ok, _} = ModelServer.fetch(path, [], ctx.server)
      calls = :counters.new(1, [])

      # The first check evicts the model between the lookups the entry is
      # made from: the entry must not be used as it stands.
      check = fn ^path ->
        :counters.add(calls, 1, 1)
        if :counters.get(calls, 1) == 1, do: ModelServer.evict(path, ctx.server)
        :ok
      end

      for _ <- 1..3,
          do: {:ok, ^path, _} = ModelServer.fetch_named("a.onnx", ctx.dir, [], check, ctx.server)

      assert :counters.get(calls, 1) == 2
    end

    @tag server_opts: [revalidate_ms: 1_000]
    test "an entry is due when the older of its two checks is", ctx do
      path = model(ctx.dir, "a.onnx")
      # The file is checked now; the name is resolved 0.6 s later.
      {:ok, old} = ModelServer.fetch(path, [], ctx.server)
      Process.sleep(600)
      {:ok, ^path, ^old} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)

      # 1.1 s after the file's check, 0.5 s after the resolution.
      Process.sleep(500)
      replace(path, @positional)
      {:ok, ^path, new} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
      assert Enum.map(new.inputs, & &1.name) == ["input_ids", "positions"]
    end

    @tag server_opts: [revalidate_ms: 3_600_000]
    test "many spellings of one name do not grow the tables without end", ctx do
      path = model(ctx.dir, "a.onnx")

      for k <- 0..4_200 do
        name = String.duplicate("./", k) <> "a.onnx"
        assert {:ok, ^path, _} = ModelServer.fetch_named(name, ctx.dir, [], &ok/1, ctx.server)
      end

      %{names: names, named: named} = :persistent_term.get({ModelServer, ctx.server})
      assert :ets.info(names, :size) <= 4096
      assert :ets.info(named, :size) <= 4096
      assert %{loads: 1} = ModelServer.stats(ctx.server)
    end

    test "refusals, failed checks and missing files are answered, not remembered", ctx do
      assert ModelServer.fetch_named("../a.onnx", ctx.dir, [], &ok/1, ctx.server) ==
               {:error, {:forbidden_path, "../a.onnx"}}

      assert ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server) ==
               {:error, {:file_not_found, "a.onnx"}}

      path = model(ctx.dir, "a.onnx")
      refuse = fn ^path -> {:error, :refused} end

      assert ModelServer.fetch_named("a.onnx", ctx.dir, [], refuse, ctx.server) ==
               {:error, :refused}

      assert %{loads: 0} = ModelServer.stats(ctx.server)
      assert {:ok, ^path, _} = ModelServer.fetch_named("a.onnx", ctx.dir, [], &ok/1, ctx.server)
    end
  end

  describe "start_link/1" do
    test "rejects bad options" do
      assert_raise ArgumentError, fn ->
        ModelServer.start_link(name: :bad_server, max_models: 0)
      end

      assert_raise ArgumentError, fn ->
        ModelServer.start_link(name: :bad_server, revalidate_ms: -1)
      end

      assert_raise ArgumentError, fn -> ModelServer.start_link(name: :bad_server, size: 3) end
    end

    test "the application starts the default server" do
      assert is_pid(Process.whereis(ModelServer))
      assert %{max_models: _} = ModelServer.stats()
    end
  end
end
