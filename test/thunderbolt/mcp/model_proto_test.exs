defmodule Thunderbolt.MCP.ModelProtoTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.MCP.ModelProto

  import Bitwise

  alias Thunderbolt.MCP.ModelProto
  alias Thunderbolt.TestModels

  # A tiny protobuf writer, from the wire format spec, to build ModelProtos
  # that exercise each branch of the walk.
  defp varint(n) when n < 0, do: varint(n + (1 <<< 64))
  defp varint(n) when n < 0x80, do: <<n>>
  defp varint(n), do: <<1::1, n &&& 0x7F::7>> <> varint(n >>> 7)

  defp field(number, value) when is_integer(value), do: varint(number <<< 3) <> varint(value)
  defp field(number, value) when is_binary(value), do: varint(number <<< 3 ||| 2) <> len(value)
  defp len(bytes), do: varint(byte_size(bytes)) <> bytes

  defp tensor(dims, opts \\ []) do
    dims_bytes =
      if opts[:packed],
        do: field(1, Enum.map_join(dims, &varint/1)),
        else: Enum.map_join(dims, &field(1, &1))

    # data_type = 1 (FLOAT) and raw_data (field 9) that the walk must skip.
    dims_bytes <> field(2, 1) <> field(9, :binary.copy(<<0>>, 16)) <> field(8, "w")
  end

  defp graph(parts), do: IO.iodata_to_binary(parts)
  defp model(graph, extra \\ ""), do: field(1, 8) <> extra <> field(7, graph)

  describe "summary/1" do
    test "counts the elements of every initializer, packed dims or not" do
      graph = graph([field(5, tensor([3, 4])), field(5, tensor([4], packed: true))])

      assert {:ok, %{parameter_count: 16, initializer_count: 2, ir_version: 8}} =
               ModelProto.summary(model(graph))
    end

    test "a tensor without dims is a scalar and counts one" do
      assert {:ok, %{parameter_count: 1}} = ModelProto.summary(model(field(5, tensor([]))))
    end

    test "counts sparse initializers by their stored values" do
      # SparseTensorProto: values = 1 (5 stored values), indices = 2, dims = 3 (a 100x100 matrix).
      sparse = field(1, tensor([5])) <> field(2, tensor([5, 2])) <> field(3, 100) <> field(3, 100)
      assert {:ok, %{parameter_count: 5}} = ModelProto.summary(model(field(15, sparse)))
    end

    test "counts initializers inside subgraphs of node attributes" do
      body = graph([field(5, tensor([2, 2]))])
      # AttributeProto: name = 1, g = 6; a second attribute with graphs = 11.
      attributes = field(5, field(1, "then_branch") <> field(6, body))

      attributes =
        attributes <> field(5, field(1, "branches") <> field(11, body) <> field(11, body))

      node = field(1, "If") <> field(4, "If") <> attributes
      graph = graph([field(1, node), field(5, tensor([10]))])

      assert {:ok, %{parameter_count: 22, initializer_count: 4}} =
               ModelProto.summary(model(graph))
    end

    test "reads the IR version, producer and opset imports" do
      opsets =
        field(8, field(1, "") <> field(2, 17)) <> field(8, field(1, "ai.onnx.ml") <> field(2, 3))

      bytes = field(1, 9) <> field(2, "keras2onnx") <> field(3, "1.2") <> opsets

      assert {:ok, summary} = ModelProto.summary(bytes)
      assert summary.ir_version == 9
      assert summary.producer_name == "keras2onnx"
      assert summary.producer_version == "1.2"

      assert summary.opset_imports == [
               %{domain: "", version: 17},
               %{domain: "ai.onnx.ml", version: 3}
             ]
    end

    test "skips fixed-width fields and fields it does not know" do
      # Field 20 fixed64 and field 21 fixed32 in the model, unknown fields in the graph.
      extra = varint(20 <<< 3 ||| 1) <> <<1::64>> <> varint(21 <<< 3 ||| 5) <> <<1::32>>
      graph = graph([field(13, "doc"), field(5, tensor([7]))])
      assert {:ok, %{parameter_count: 7}} = ModelProto.summary(model(graph, extra))
    end

    test "refuses malformed bytes with a message instead of raising" do
      for {bytes, expected} <- [
            {<<0x3A, 0x05, 0x01>>, "truncated length-delimited field"},
            {<<0x08>>, "truncated varint"},
            {<<0x80>>, "truncated field key"},
            {<<0x09, 1, 2>>, "truncated fixed-width field"},
            {<<0x0B>>, "unsupported wire type 3"},
            {<<0x00>>, "field number 0"},
            {field(7, 5), "ModelProto field 7 has the wrong wire type"},
            {model(field(5, 3)), "GraphProto field 5 has the wrong wire type"},
            {model(field(5, field(1, -2))), "negative initializer dimension"},
            {model(field(5, field(1, <<0x80>>))), "malformed packed TensorProto.dims"},
            {:binary.copy(<<0xFF>>, 11) <> <<0x01>>, "truncated field key"}
          ] do
        assert ModelProto.summary(bytes) == {:error, "not an ONNX model: #{expected}"},
               inspect(bytes)
      end
    end

    test "refuses subgraphs nested deeper than it walks" do
      deep =
        Enum.reduce(1..70, graph([field(5, tensor([1]))]), fn _, inner ->
          graph([field(1, field(5, field(6, inner)))])
        end)

      assert {:error, "not an ONNX model: subgraphs nested deeper than 64 levels"} =
               ModelProto.summary(model(deep))
    end

    test "never raises on random bytes" do
      :rand.seed(:exsss, {1, 2, 3})

      for _ <- 1..2000 do
        bytes = :crypto.strong_rand_bytes(:rand.uniform(64))

        assert match?({:ok, _}, ModelProto.summary(bytes)) or
                 match?({:error, "not an ONNX model: " <> _}, ModelProto.summary(bytes))
      end
    end
  end

  describe "read/1" do
    @describetag :shared_models

    test "counts cerebros_trained.onnx's 217,832 parameters, as its README states" do
      assert {:ok, summary} = ModelProto.read(TestModels.shared("cerebros_trained.onnx"))
      assert summary.parameter_count == 217_832
      assert summary.ir_version == 6
      assert summary.opset_imports == [%{domain: "", version: 11}]
    end

    test "agrees with the onnx Python package on cerebros_mini.onnx" do
      python = TestModels.python() || flunk("the .venv is missing: run ./scripts/setup.sh")
      path = TestModels.shared("cerebros_mini.onnx")

      script = """
      import sys, onnx, numpy
      m = onnx.load(sys.argv[1])
      print(sum(int(numpy.prod(t.dims)) for t in m.graph.initializer), len(m.graph.initializer))
      """

      {out, 0} = System.cmd(python, ["-c", script, path])
      [count, tensors] = out |> String.split() |> Enum.map(&String.to_integer/1)

      assert {:ok, summary} = ModelProto.read(path)
      assert {summary.parameter_count, summary.initializer_count} == {count, tensors}
      assert summary.producer_name == "tf2onnx"
    end
  end
end
