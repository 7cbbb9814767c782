defmodule ThunderboltTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt

  import Thunderbolt.TestModels
  alias Thunderbolt.{Error, Session, Tensor}

  @types ~w(f16 bf16 f32 f64 s8 s16 s32 s64 u8 u16 u32 u64 bool)a

  defp tmp_path(name) do
    dir = Path.join(System.tmp_dir!(), "thunderbolt-test-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    Path.join(dir, name)
  end

  defp multi_io, do: Thunderbolt.load!(fixture("runtime/multi_io.onnx"))

  defp f32(list, shape), do: Tensor.new(list, type: :f32) |> Tensor.reshape(shape)

  describe "load/2" do
    test "from a path and from a binary" do
      path = fixture("runtime/multi_io.onnx")
      assert {:ok, %Session{} = from_path} = Thunderbolt.load(path)
      assert {:ok, %Session{} = from_binary} = Thunderbolt.load({:binary, File.read!(path)})
      assert from_path.inputs == from_binary.inputs
    end

    test "describes inputs, outputs and metadata" do
      session = multi_io()

      assert session.inputs == [
               %{name: "a", type: {:f, 32}, shape: {nil, 4}},
               %{name: "b", type: {:f, 32}, shape: {nil, 4}},
               %{name: "n", type: {:s, 64}, shape: {nil}}
             ]

      assert Enum.map(session.outputs, &{&1.name, &1.type}) == [
               {"sum", {:f, 32}},
               {"product", {:f, 32}},
               {"n_squared", {:s, 64}},
               {"positive", {:u, 8}}
             ]

      assert session.metadata.producer == "thunderbolt-fixtures"
      assert session.metadata.opset == 18
      assert session.metadata.version == 3
      assert session.metadata.custom == %{"author" => "thunderbolt", "task" => "fixture"}
      assert session.providers == ["CPUExecutionProvider"]
      assert inspect(session) =~ "a: f32[?,4]"
    end

    test "honours options" do
      session =
        Thunderbolt.load!(fixture("runtime/multi_io.onnx"),
          intra_op_threads: 2,
          inter_op_threads: 1,
          optimization_level: :basic,
          pool_size: 3
        )

      assert Thunderbolt.Native.session_pool_size(session.resource) == 3
      assert session.options[:optimization_level] == :basic
    end

    test "falls back to CPU when a requested provider is missing, and says so" do
      session =
        Thunderbolt.load!(fixture("runtime/multi_io.onnx"), execution_providers: [:cuda, :cpu])

      assert List.last(session.providers) == "CPUExecutionProvider"

      unless "CUDAExecutionProvider" in session.providers do
        assert [warning] = session.warnings
        # Missing from a CPU build; or, in a GPU build, its libraries or
        # device missing.
        assert warning =~
                 ~r/^CUDAExecutionProvider (is not available|could not be started|failed when the session started)/
      end
    end

    test "refuses bad options with :invalid_option" do
      path = fixture("runtime/multi_io.onnx")

      for opts <- [
            [pool_size: 0],
            [intra_op_threads: -1],
            [intra_op_threads: 1_000_000],
            [inter_op_threads: 1025],
            [max_normal_run_us: 10 ** 30],
            [optimization_level: :max],
            [execution_providers: [:tpu]],
            [nonsense: true],
            :not_a_list,
            [{:pool_size, 1} | :improper]
          ] do
        assert {:error, %Error{kind: :invalid_option}} = Thunderbolt.load(path, opts),
               inspect(opts)
      end
    end

    test "bad sources give a clear error and the VM stays up" do
      dir = Path.dirname(tmp_path("x"))
      empty = tmp_path("empty.onnx")
      File.write!(empty, "")
      garbage = tmp_path("garbage.onnx")
      File.write!(garbage, :crypto.strong_rand_bytes(4096))
      truncated = tmp_path("truncated.onnx")
      File.write!(truncated, binary_part(File.read!(fixture("runtime/multi_io.onnx")), 0, 100))
      # Reading either would never end.
      fifo = tmp_path("fifo.onnx")
      File.rm(fifo)
      {_, 0} = System.cmd("mkfifo", [fifo])

      cases = [
        {"/definitely/not/here.onnx", ~r/cannot read/},
        {dir, ~r/is a directory/},
        {empty, ~r/is empty/},
        {fifo, ~r/is not a regular file/},
        {"/dev/zero", ~r/is not a regular file/},
        {garbage, ~r/./},
        {truncated, ~r/./},
        {{:binary, ""}, ~r/empty/},
        {{:binary, "garbage bytes"}, ~r/./},
        {"with\0nul.onnx", ~r/NUL/}
      ]

      for {source, message} <- cases do
        assert {:error, %Error{kind: :load, message: text}} = Thunderbolt.load(source),
               inspect(source)

        assert text =~ message
      end

      assert {:error, %Error{kind: :invalid_input}} = Thunderbolt.load(42)
      assert {:ok, _} = Thunderbolt.load(fixture("runtime/multi_io.onnx"))
    end

    test "a missing or foreign ONNX Runtime library is an error that says how to fix it" do
      # The library is fixed per OS process, so each case runs in a fresh VM.
      not_a_lib = tmp_path("libonnxruntime.so")
      File.write!(not_a_lib, "not a shared library")

      for {lib, pattern} <- [
            {"/nonexistent/libonnxruntime.so", "not found"},
            {not_a_lib, "could not open"}
          ] do
        code = """
        case Thunderbolt.load(#{inspect(fixture("runtime/multi_io.onnx"))}) do
          {:error, %Thunderbolt.Error{kind: :library, message: m}} -> IO.puts("LIBRARY_ERROR " <> m)
          other -> IO.inspect(other, label: "UNEXPECTED")
        end
        {:error, %Thunderbolt.Error{kind: :library}} = Thunderbolt.load({:binary, "x"})
        IO.puts("STILL_UP")
        """

        {out, 0} =
          System.cmd("mix", ["run", "--no-compile", "--no-start", "-e", code],
            env: [{"MIX_ENV", "test"}, {"THUNDERBOLT_ORT_LIB", lib}],
            stderr_to_stdout: true
          )

        assert out =~ "LIBRARY_ERROR"
        assert out =~ pattern
        assert out =~ "scripts/setup.sh"
        assert out =~ "STILL_UP"
      end
    end

    test "load!/2 raises Thunderbolt.Error" do
      assert_raise Error, ~r/cannot read/, fn -> Thunderbolt.load!("/nope.onnx") end
    end
  end

  describe "run/3" do
    setup do
      fixture = json!("runtime/multi_io.json")
      inputs = fixture["inputs"]

      tensors = %{
        "a" => f32(inputs["a"]["data"], List.to_tuple(inputs["a"]["shape"])),
        "b" => f32(inputs["b"]["data"], List.to_tuple(inputs["b"]["shape"])),
        "n" => Tensor.new(inputs["n"]["data"], type: :s64)
      }

      %{session: multi_io(), tensors: tensors, expected: fixture["outputs"]}
    end

    test "matches Python onnxruntime on every output", %{session: s, tensors: t, expected: e} do
      assert {:ok, outputs} = Thunderbolt.run(s, t)
      assert Map.keys(outputs) |> Enum.sort() == ~w(n_squared positive product sum)

      for {name, %{"shape" => shape, "data" => data}} <- e do
        assert outputs[name].shape == List.to_tuple(shape)
        assert_close(Tensor.to_flat_list(outputs[name]), data)
      end

      assert outputs["positive"].type == {:u, 8}
      assert outputs["n_squared"].type == {:s, 64}
    end

    test "accepts a list, a string-keyed map and an atom-keyed map", %{session: s, tensors: t} do
      {:ok, by_map} = Thunderbolt.run(s, t)
      assert {:ok, ^by_map} = Thunderbolt.run(s, [t["a"], t["b"], t["n"]])
      assert {:ok, ^by_map} = Thunderbolt.run(s, %{a: t["a"], b: t["b"], n: t["n"]})
    end

    test "computes only the selected outputs", %{session: s, tensors: t} do
      assert {:ok, outputs} = Thunderbolt.run(s, t, outputs: ["product", :sum])
      assert Map.keys(outputs) |> Enum.sort() == ["product", "sum"]

      assert {:error, %Error{message: message}} = Thunderbolt.run(s, t, outputs: ["nope"])
      assert message =~ ~s[unknown output(s) "nope"]
    end

    test "every scheduler mode gives the same answer", %{session: s, tensors: t} do
      {:ok, expected} = Thunderbolt.run(s, t, scheduler: :dirty)

      for _ <- 1..20, mode <- [:auto, :normal, :dirty] do
        assert {:ok, ^expected} = Thunderbolt.run(s, t, scheduler: mode)
      end

      # After a few measured runs, the estimate exists and is small.
      bytes = Enum.sum(for {_, x} <- t, do: byte_size(x.data))
      assert is_float(Thunderbolt.Native.session_estimated_run_us(s.resource, bytes))
    end

    test "a single tensor is refused for a multi-input model", %{session: s, tensors: t} do
      assert {:error, %Error{message: message}} = Thunderbolt.run(s, t["a"])
      assert message =~ "has 3 inputs"
    end

    test "missing, unknown, duplicated and surplus inputs", %{session: s, tensors: t} do
      assert {:error, %Error{kind: :invalid_input, message: m1}} =
               Thunderbolt.run(s, Map.delete(t, "n"))

      assert m1 =~ ~s[missing input(s): "n"]

      assert {:error, %Error{message: m2}} = Thunderbolt.run(s, Map.put(t, "zzz", t["n"]))
      assert m2 =~ ~s[unknown input(s) "zzz"]

      assert {:error, %Error{message: m3}} = Thunderbolt.run(s, Map.put(t, :a, t["a"]))
      assert m3 =~ ~s(input "a" is given twice)

      assert {:error, %Error{message: m4}} = Thunderbolt.run(s, [t["a"], t["b"], t["n"], t["n"]])

      assert m4 =~ "takes 3 input(s)"

      assert {:error, %Error{message: m5}} = Thunderbolt.run(s, [t["a"]])
      assert m5 =~ "got 1"
      assert {:error, %Error{}} = Thunderbolt.run(s, %{"a" => [1.0]})
      assert {:error, %Error{}} = Thunderbolt.run(s, :nope)

      assert {:error, %Error{message: m6}} = Thunderbolt.run(s, [t["a"], t["b"] | t["n"]])
      assert m6 =~ "a proper list"
    end

    test "wrong dtype, rank, shape and data size", %{session: s, tensors: t} do
      wrong_type = Tensor.new([[1, 2, 3, 4]], type: :s32)
      wrong_rank = f32([1.0, 2.0, 3.0, 4.0], {4})
      wrong_dim = f32([1.0, 2.0, 3.0], {1, 3})
      short_data = %Tensor{type: {:f, 32}, shape: {1, 4}, data: <<0::96>>}
      negative = %Tensor{type: {:f, 32}, shape: {-1, 4}, data: <<>>}
      overflowing = %Tensor{type: {:f, 32}, shape: {4_611_686_018_427_387_904, 4}, data: <<>>}

      for {bad, pattern} <- [
            {wrong_type, ~r/expects f32 but got s32/},
            {wrong_rank, ~r/expects shape \[\?, 4\]/},
            {wrong_dim, ~r/expects shape \[\?, 4\] but got \[1, 3\]/},
            {short_data, ~r/needs 16 bytes, got 12/},
            {negative, ~r/negative/},
            {overflowing, ~r/overflows/}
          ] do
        assert {:error, %Error{kind: :invalid_input, message: message}} =
                 Thunderbolt.run(s, %{t | "a" => bad})

        assert message =~ pattern
      end

      # Inconsistent batch sizes pass our checks and are refused by ONNX Runtime.
      assert {:error, %Error{kind: :onnxruntime}} =
               Thunderbolt.run(s, %{t | "a" => f32(List.duplicate(1.0, 8), {2, 4})})

      # The session still works afterwards.
      assert {:ok, _} = Thunderbolt.run(s, t)
    end

    test "a malformed tensor struct is an error, on both run paths", %{session: s, tensors: t} do
      one_input = Thunderbolt.load!(fixture("runtime/identity_f32.onnx"))
      good = f32([1.0, 2.0, 3.0], {1, 3})

      for {bad, pattern} <- [
            {%Tensor{good | type: {:x, 8}}, ~r/input 0: not a tensor of a known type/},
            {%Tensor{good | type: :f32}, ~r/not a tensor of a known type/},
            {%Tensor{good | shape: [1, 3]}, ~r/shape is not a tuple of integers/},
            {%Tensor{good | shape: {1, 3.0}}, ~r/shape is not a tuple of integers/},
            {%Tensor{good | data: [1.0, 2.0, 3.0]}, ~r/data is not a binary/}
          ] do
        # The direct clause (one tensor, no options) and the general one.
        assert {:error, %Error{kind: :invalid_input, message: m1}} =
                 Thunderbolt.run(one_input, bad)

        assert m1 =~ pattern

        assert {:error, %Error{kind: :invalid_input, message: m2}} =
                 Thunderbolt.run(one_input, [bad], scheduler: :dirty)

        assert m2 =~ pattern
      end

      assert {:error, %Error{message: message}} =
               Thunderbolt.run(s, %{t | "b" => %{t["b"] | data: nil}})

      assert message =~ "input 1: its data is not a binary"
      assert {:ok, %{"y" => ^good}} = Thunderbolt.run(one_input, good)
    end

    test "outputs whose shape follows the input's values, not its shape" do
      # Later runs of one input shape get output buffers sized by the run
      # before; NonZero's output size changes with the values instead.
      s = Thunderbolt.load!(fixture("runtime/nonzero.onnx"))

      for {values, indices} <- [
            {[0.0, 1.0, 0.0, 2.0], [1, 3]},
            {[3.0, 1.0, 0.0, 2.0], [0, 1, 3]},
            {[0.0, 0.0, 0.0, 5.0], [3]},
            {[0.0, 0.0, 0.0, 5.0], [3]}
          ] do
        assert {:ok, %{"y" => y}} = Thunderbolt.run(s, Tensor.new(values, type: :f32))
        assert y.shape == {1, length(indices)}
        assert Tensor.to_flat_list(y) == indices
      end
    end

    test "a sub-binary that is not aligned is read correctly", %{session: s, tensors: t} do
      <<_::8, unaligned::binary-size(48), _::binary>> = <<0>> <> t["a"].data <> <<0>>
      tensor = %Tensor{t["a"] | data: unaligned}
      assert {:ok, expected} = Thunderbolt.run(s, t)
      assert {:ok, ^expected} = Thunderbolt.run(s, %{t | "a" => tensor})
    end

    test "run!/3 raises" do
      assert_raise Error, fn -> Thunderbolt.run!(multi_io(), %{}) end
    end

    test "bad run options", %{session: s, tensors: t} do
      assert {:error, %Error{kind: :invalid_option}} = Thunderbolt.run(s, t, scheduler: :fast)
      assert {:error, %Error{kind: :invalid_option}} = Thunderbolt.run(s, t, outputs: "sum")
      assert {:error, %Error{kind: :invalid_option}} = Thunderbolt.run(s, t, outputs: [:sum | :x])
      assert {:error, %Error{kind: :invalid_option}} = Thunderbolt.run(s, t, bogus: 1)
    end
  end

  describe "dtypes" do
    test "every supported type goes through ONNX Runtime byte for byte" do
      values = %{
        f16: [1.5, -2.0, 0.25, 8.0, 0.0, -0.5],
        bf16: [1.5, -2.0, 0.25, 8.0, 0.0, -0.5],
        f32: [1.5, -2.0, 0.25, 8.0, 1.0e-20, -0.5],
        f64: [1.5, -2.0, 0.25, 8.0, 1.0e-300, -0.5],
        s8: [-128, 127, 0, 1, -1, 5],
        s16: [-32768, 32767, 0, 1, -1, 5],
        s32: [-2_147_483_648, 2_147_483_647, 0, 1, -1, 5],
        s64: [-9_223_372_036_854_775_808, 9_223_372_036_854_775_807, 0, 1, -1, 5],
        u8: [0, 255, 1, 2, 3, 4],
        u16: [0, 65535, 1, 2, 3, 4],
        u32: [0, 4_294_967_295, 1, 2, 3, 4],
        u64: [0, 18_446_744_073_709_551_615, 1, 2, 3, 4],
        bool: [1, 0, 1, 1, 0, 0]
      }

      for type <- @types do
        session = Thunderbolt.load!(fixture("runtime/identity_#{type}.onnx"))
        input = values[type] |> Tensor.new(type: type) |> Tensor.reshape({2, 3})
        assert {:ok, %{"y" => output}} = Thunderbolt.run(session, input), "#{type}"
        assert output == input, "#{type}"
      end
    end
  end

  describe "string tensors" do
    test "are refused with :unsupported, and the session keeps working" do
      session = Thunderbolt.load!(fixture("runtime/cast_to_string.onnx"))
      assert [%{name: "y", type: nil}] = session.outputs
      x = Tensor.new([1.5, 2.0], type: :f32)
      assert {:error, %Error{kind: :unsupported, message: message}} = Thunderbolt.run(session, x)
      assert message =~ "string outputs are not supported"
      assert {:error, %Error{kind: :unsupported}} = Thunderbolt.run(session, x)
    end
  end

  describe "reference models" do
    @describetag :shared_models

    setup do
      %{expected: json!("runtime/reference_outputs.json")}
    end

    test "cerebros_trained.onnx matches Python onnxruntime", %{expected: e} do
      session = Thunderbolt.load!(shared("cerebros_trained.onnx"))
      ids = Tensor.new(e["input_ids"], type: :s64)
      assert {:ok, %{"logits" => logits}} = Thunderbolt.run(session, ids)
      assert logits.shape == List.to_tuple(e["cerebros_trained"]["shape"])
      assert_close(Tensor.to_flat_list(logits), e["cerebros_trained"]["logits"])
    end

    test "the two-input cerebros_mini.onnx matches Python onnxruntime", %{expected: e} do
      session = Thunderbolt.load!(shared("cerebros_mini.onnx"))
      ids = Tensor.new(e["input_ids"], type: :s32)

      positional =
        e["cerebros_mini"]["positional"] |> Tensor.new(type: :f32) |> Tensor.reshape({40, 64})

      assert {:ok, %{"logits" => logits}} =
               Thunderbolt.run(session, %{
                 "input_ids" => ids,
                 "functional_1/Add/y:0" => positional
               })

      assert_close(Tensor.to_flat_list(logits), e["cerebros_mini"]["logits"])
    end

    test "out-of-range token ids are an error, not a crash" do
      session = Thunderbolt.load!(shared("cerebros_trained.onnx"))
      ids = Tensor.new([Enum.to_list(980..1019)], type: :s64)

      assert {:error, %Error{kind: :onnxruntime, message: message}} =
               Thunderbolt.run(session, ids)

      assert message =~ "out of data bounds"
      assert {:ok, _} = Thunderbolt.run(session, Tensor.new([List.duplicate(1, 40)], type: :s64))
    end

    test "many processes share one session while others drop theirs" do
      path = shared("cerebros_trained.onnx")
      shared_session = Thunderbolt.load!(path, pool_size: 2)
      ids = Tensor.new([Enum.to_list(1..40)], type: :s64)
      {:ok, expected} = Thunderbolt.run(shared_session, ids)

      runners =
        for _ <- 1..16 do
          Task.async(fn ->
            for _ <- 1..200 do
              assert {:ok, ^expected} = Thunderbolt.run(shared_session, ids)
            end

            :ok
          end)
        end

      droppers =
        for _ <- 1..4 do
          Task.async(fn ->
            for _ <- 1..10 do
              own = Thunderbolt.load!(path, pool_size: 1)
              assert {:ok, ^expected} = Thunderbolt.run(own, ids)
              :erlang.garbage_collect()
            end

            :ok
          end)
        end

      assert Enum.all?(Task.await_many(runners ++ droppers, 60_000), &(&1 == :ok))
    end
  end
end
