defmodule Thunderbolt.MCP.ModelProto do
  @moduledoc """
  Reads the facts `model_info` reports that ONNX Runtime does not expose,
  straight from an ONNX file's protobuf bytes: the parameter count, the IR
  version and the opset imports.

  ONNX Runtime hides a model's initializers (its weights) behind the
  session, so counting parameters means reading the `ModelProto` itself.
  This is a small protobuf walk, not a full decoder: it visits only the
  fields below and skips everything else by its wire type. Field numbers
  are those of `onnx.proto`:

    * `ModelProto`: `ir_version = 1`, `producer_name = 2`,
      `producer_version = 3`, `graph = 7`, `opset_import = 8`
    * `OperatorSetIdProto`: `domain = 1`, `version = 2`
    * `GraphProto`: `node = 1`, `initializer = 5`, `sparse_initializer = 15`
    * `NodeProto`: `attribute = 5`
    * `AttributeProto`: `g = 6`, `graphs = 11` (subgraphs of `If`, `Loop`
      and `Scan`, whose initializers count too)
    * `TensorProto`: `dims = 1` (packed or not)
    * `SparseTensorProto`: `values = 1` (a sparse initializer counts its
      stored values)

  The parameter count is the number of elements in all initializers, which
  is what Keras calls the model's parameters when the model was exported
  from Keras, plus any constant tensors the exporter stored as
  initializers. Weights kept in external data files still count: their
  `dims` live in the model file.

      iex> Thunderbolt.MCP.ModelProto.summary(<<>>)
      {:ok, %{ir_version: nil, producer_name: nil, producer_version: nil, opset_imports: [], parameter_count: 0, initializer_count: 0}}

      iex> {:error, message} = Thunderbolt.MCP.ModelProto.summary(<<0x3A, 0x05, 0x01>>)
      iex> message
      "not an ONNX model: truncated length-delimited field"
  """

  import Bitwise

  @max_depth 64

  @type summary :: %{
          ir_version: non_neg_integer() | nil,
          producer_name: String.t() | nil,
          producer_version: String.t() | nil,
          opset_imports: [%{domain: String.t(), version: integer()}],
          parameter_count: non_neg_integer(),
          initializer_count: non_neg_integer()
        }

  @doc """
  Reads `path` and returns `summary/1` of its bytes.

      iex> {:error, message} = Thunderbolt.MCP.ModelProto.read("/no/such/model.onnx")
      iex> message
      "cannot read /no/such/model.onnx: no such file or directory"
  """
  @spec read(Path.t()) :: {:ok, summary()} | {:error, String.t()}
  def read(path) do
    case File.read(path) do
      {:ok, bytes} -> summary(bytes)
      {:error, reason} -> {:error, "cannot read #{path}: #{:file.format_error(reason)}"}
    end
  end

  @doc """
  Summarises a serialized `ModelProto`.

  Returns the IR version, producer, opset imports, the number of
  initializer tensors and the total number of their elements (the
  parameter count), or `{:error, message}` when the bytes are not a
  well-formed protobuf message.
  """
  @spec summary(binary()) :: {:ok, summary()} | {:error, String.t()}
  def summary(bytes) when is_binary(bytes) do
    initial = %{
      ir_version: nil,
      producer_name: nil,
      producer_version: nil,
      opset_imports: [],
      parameter_count: 0,
      initializer_count: 0
    }

    case fold(bytes, initial, &model_field/3) do
      {:ok, summary} -> {:ok, Map.update!(summary, :opset_imports, &Enum.reverse/1)}
      {:error, reason} -> {:error, "not an ONNX model: #{reason}"}
    end
  end

  defp model_field(1, value, acc) when is_integer(value), do: {:ok, %{acc | ir_version: value}}
  defp model_field(2, value, acc) when is_binary(value), do: {:ok, %{acc | producer_name: value}}

  defp model_field(3, value, acc) when is_binary(value),
    do: {:ok, %{acc | producer_version: value}}

  defp model_field(7, graph, acc) when is_binary(graph) do
    with {:ok, {params, count}} <- graph_parameters(graph, 0) do
      {:ok,
       %{
         acc
         | parameter_count: acc.parameter_count + params,
           initializer_count: acc.initializer_count + count
       }}
    end
  end

  defp model_field(8, opset, acc) when is_binary(opset) do
    with {:ok, import} <- fold(opset, %{domain: "", version: 0}, &opset_field/3) do
      {:ok, %{acc | opset_imports: [import | acc.opset_imports]}}
    end
  end

  defp model_field(field, _value, _acc) when field in [1, 2, 3, 7, 8],
    do: {:error, "ModelProto field #{field} has the wrong wire type"}

  defp model_field(_field, _value, acc), do: {:ok, acc}

  defp opset_field(1, domain, acc) when is_binary(domain), do: {:ok, %{acc | domain: domain}}
  defp opset_field(2, version, acc) when is_integer(version), do: {:ok, %{acc | version: version}}
  defp opset_field(_field, _value, acc), do: {:ok, acc}

  # Returns {elements, initializer tensors} for a GraphProto and its subgraphs.
  defp graph_parameters(_graph, depth) when depth > @max_depth,
    do: {:error, "subgraphs nested deeper than #{@max_depth} levels"}

  defp graph_parameters(graph, depth) do
    fold(graph, {0, 0}, fn
      5, tensor, {params, count} when is_binary(tensor) ->
        with {:ok, n} <- tensor_elements(tensor), do: {:ok, {params + n, count + 1}}

      15, sparse, {params, count} when is_binary(sparse) ->
        with {:ok, n} <- sparse_elements(sparse), do: {:ok, {params + n, count + 1}}

      1, node, {params, count} when is_binary(node) ->
        with {:ok, {p, c}} <- node_parameters(node, depth),
             do: {:ok, {params + p, count + c}}

      field, _value, _acc when field in [1, 5, 15] ->
        {:error, "GraphProto field #{field} has the wrong wire type"}

      _field, _value, acc ->
        {:ok, acc}
    end)
  end

  defp node_parameters(node, depth) do
    fold(node, {0, 0}, fn
      5, attribute, acc when is_binary(attribute) -> attribute_parameters(attribute, depth, acc)
      _field, _value, acc -> {:ok, acc}
    end)
  end

  defp attribute_parameters(attribute, depth, acc) do
    fold(attribute, acc, fn
      field, graph, {params, count} when field in [6, 11] and is_binary(graph) ->
        with {:ok, {p, c}} <- graph_parameters(graph, depth + 1),
             do: {:ok, {params + p, count + c}}

      _field, _value, acc ->
        {:ok, acc}
    end)
  end

  defp sparse_elements(sparse) do
    fold(sparse, 0, fn
      1, values, acc when is_binary(values) ->
        with {:ok, n} <- tensor_elements(values), do: {:ok, acc + n}

      _field, _value, acc ->
        {:ok, acc}
    end)
  end

  # A tensor without dims is a scalar: one element.
  defp tensor_elements(tensor) do
    with {:ok, dims} <- fold(tensor, [], &dims_field/3) do
      if Enum.any?(dims, &(&1 < 0)),
        do: {:error, "negative initializer dimension"},
        else: {:ok, Enum.product(dims)}
    end
  end

  defp dims_field(1, dim, dims) when is_integer(dim), do: {:ok, [int64(dim) | dims]}

  defp dims_field(1, packed, dims) when is_binary(packed) do
    case packed_varints(packed, dims) do
      {:ok, dims} -> {:ok, dims}
      :error -> {:error, "malformed packed TensorProto.dims"}
    end
  end

  defp dims_field(_field, _value, dims), do: {:ok, dims}

  defp packed_varints(<<>>, acc), do: {:ok, acc}

  defp packed_varints(bytes, acc) do
    case varint(bytes) do
      {:ok, value, rest} -> packed_varints(rest, [int64(value) | acc])
      :error -> :error
    end
  end

  defp int64(value) when value >= 1 <<< 63, do: value - (1 <<< 64)
  defp int64(value), do: value

  # Folds `fun.(field_number, value, acc)` over the fields of one protobuf
  # message. Varints and fixed-width fields arrive as integers,
  # length-delimited ones as sub-binaries (no copy).
  defp fold(<<>>, acc, _fun), do: {:ok, acc}

  defp fold(bytes, acc, fun) do
    with {:ok, key, rest} <- key(bytes),
         {:ok, value, rest} <- value(key &&& 7, rest),
         {:ok, acc} <- fun.(key >>> 3, value, acc) do
      fold(rest, acc, fun)
    end
  end

  defp key(bytes) do
    case varint(bytes) do
      {:ok, key, _rest} when key >>> 3 == 0 -> {:error, "field number 0"}
      {:ok, key, rest} -> {:ok, key, rest}
      :error -> {:error, "truncated field key"}
    end
  end

  defp value(0, bytes) do
    case varint(bytes) do
      {:ok, value, rest} -> {:ok, value, rest}
      :error -> {:error, "truncated varint"}
    end
  end

  defp value(1, <<value::little-64, rest::binary>>), do: {:ok, value, rest}

  defp value(2, bytes) do
    case varint(bytes) do
      {:ok, size, rest} when byte_size(rest) >= size ->
        <<value::binary-size(size), rest::binary>> = rest
        {:ok, value, rest}

      _ ->
        {:error, "truncated length-delimited field"}
    end
  end

  defp value(5, <<value::little-32, rest::binary>>), do: {:ok, value, rest}
  defp value(wire, _bytes) when wire in [1, 5], do: {:error, "truncated fixed-width field"}
  defp value(wire, _bytes), do: {:error, "unsupported wire type #{wire}"}

  # A varint is at most 10 bytes (64 bits in 7-bit groups).
  defp varint(bytes), do: varint(bytes, 0, 0)

  defp varint(<<1::1, group::7, rest::binary>>, shift, acc) when shift < 63,
    do: varint(rest, shift + 7, acc ||| group <<< shift)

  defp varint(<<0::1, group::7, rest::binary>>, shift, acc) when shift <= 63,
    do: {:ok, (acc ||| group <<< shift) &&& (1 <<< 64) - 1, rest}

  defp varint(_bytes, _shift, _acc), do: :error
end
