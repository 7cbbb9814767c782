defmodule Thunderbolt.Builder do
  @moduledoc """
  Builds ONNX models from Keras-style layers and their weights, without Python.

  A model spec is plain data. Layers use Keras class names, Keras config keys
  and Keras weight layouts (a `Dense` kernel is `[in, out]`, an `Embedding`
  table `[vocab, dim]`), so weights exported from Keras go in unchanged. The
  result is a serialized ONNX model that `Thunderbolt.load/2` loads directly.
  `SUPPORTED-LAYERS.md` lists every layer and activation.

  ## The spec

    * `:inputs` — a list of `%{name: "input_ids", type: :s64, shape: {nil, 40}}`.
      The shape includes the batch dimension; `nil` marks a dynamic one. Any
      `Thunderbolt.Tensor` type the builder supports: `:f32`, `:f64`, `:f16`,
      `:s8`, `:s16`, `:s32`, `:s64`, `:u8`, `:bool`.
    * `:layers` — a list of `%{name:, class_name:, config:, inbound:, weights:}`,
      in any order. `config` is the Keras config (a map, atom or string keys;
      default `%{}`), `inbound` the names of the inputs or layers it reads, in
      call order (a string for one), and `weights` a list of
      `Thunderbolt.Tensor`s (or `Nx.Tensor`s) in Keras order.
    * `:outputs` — a list of `%{name: "logits", source: "dense_2"}`, or just
      the source's name when the output should carry it.
    * `:name` — the graph name (optional).
    * `:opset` — the ONNX opset, 18 to 22 (optional, default 18).

  Every problem is reported before anything is built, naming the layer:
  unknown layer types, missing or wrongly shaped weights, dangling or cyclic
  references, duplicate names, unsupported types.

  ## Example: the original application's model

  `Embedding(1000, 64) → GlobalAveragePooling1D → Dense(128, relu) →
  Dense(128, relu) → Dense(1000)`, here with made-up weights:

      iex> weights = fn shape ->
      ...>   n = shape |> Tuple.to_list() |> Enum.product()
      ...>   data = for i <- 1..n, into: <<>>, do: <<:math.sin(i) * 0.1::float-32-native>>
      ...>   Thunderbolt.Tensor.from_binary(data, :f32, shape)
      ...> end
      iex> dense = fn name, inbound, fan_in, units, activation ->
      ...>   %{
      ...>     name: name,
      ...>     class_name: "Dense",
      ...>     config: %{units: units, activation: activation},
      ...>     inbound: inbound,
      ...>     weights: [weights.({fan_in, units}), weights.({units})]
      ...>   }
      ...> end
      iex> spec = %{
      ...>   name: "cerebros",
      ...>   inputs: [%{name: "input_ids", type: :s64, shape: {nil, 40}}],
      ...>   layers: [
      ...>     %{
      ...>       name: "embedding",
      ...>       class_name: "Embedding",
      ...>       config: %{input_dim: 1000, output_dim: 64},
      ...>       inbound: "input_ids",
      ...>       weights: [weights.({1000, 64})]
      ...>     },
      ...>     %{name: "pooling", class_name: "GlobalAveragePooling1D", inbound: "embedding"},
      ...>     dense.("dense1", "pooling", 64, 128, "relu"),
      ...>     dense.("dense2", "dense1", 128, 128, "relu"),
      ...>     dense.("logits", "dense2", 128, 1000, "linear")
      ...>   ],
      ...>   outputs: ["logits"]
      ...> }
      iex> {:ok, onnx} = Thunderbolt.Builder.build(spec)
      iex> {:ok, session} = Thunderbolt.load({:binary, onnx})
      iex> ids = Thunderbolt.Tensor.new([Enum.to_list(1..40), Enum.to_list(960..999)], type: :s64)
      iex> {:ok, %{"logits" => logits}} = Thunderbolt.run(session, ids)
      iex> logits.shape
      {2, 1000}

  A mistake names the layer:

      iex> spec = %{
      ...>   inputs: [%{name: "x", type: :f32, shape: {nil, 4}}],
      ...>   layers: [
      ...>     %{
      ...>       name: "dense",
      ...>       class_name: "Dense",
      ...>       config: %{units: 2},
      ...>       inbound: "x",
      ...>       weights: [Thunderbolt.Tensor.new([[1.0, 2.0], [3.0, 4.0]], type: :f32)]
      ...>     }
      ...>   ],
      ...>   outputs: ["dense"]
      ...> }
      iex> {:error, %Thunderbolt.Error{kind: :build, message: message}} = Thunderbolt.Builder.build(spec)
      iex> message
      "layer \\"dense\\" (Dense): expects 2 weight tensor(s) [kernel, bias], got 1"
  """

  alias Thunderbolt.{Error, Native, Tensor}

  @type input :: %{name: String.t(), type: Tensor.type_name(), shape: tuple() | list()}
  @type layer :: %{
          required(:name) => String.t(),
          required(:class_name) => String.t(),
          optional(:config) => map() | keyword(),
          optional(:inbound) => String.t() | [String.t()],
          optional(:weights) => [Tensor.t()]
        }
  @type output :: String.t() | %{name: String.t(), source: String.t()}
  @type spec :: %{
          required(:inputs) => [input()],
          required(:layers) => [layer()],
          required(:outputs) => [output()],
          optional(:name) => String.t(),
          optional(:opset) => pos_integer()
        }

  @spec_keys [:inputs, :layers, :outputs, :name, :opset]
  @most_dim 0x7FFF_FFFF_FFFF_FFFF
  @input_keys [:name, :type, :shape]
  @layer_keys [:name, :class_name, :config, :inbound, :weights]
  @output_keys [:name, :source]

  @doc """
  Builds the model described by `spec` and returns the serialized ONNX model.

  Errors are `%Thunderbolt.Error{kind: :build}` when the builder refuses the
  model, and `kind: :invalid_input` when the spec itself is malformed (a
  missing key, a weight that is not a tensor). See the module docs for the
  spec and an example.
  """
  @spec build(spec()) :: {:ok, binary()} | {:error, Error.t()}
  def build(spec) do
    with {:ok, native} <- normalize(spec) do
      native |> Native.builder_build() |> Error.from_native()
    end
  end

  @doc """
  Like `build/1`, raising `Thunderbolt.Error` on failure.
  """
  @spec build!(spec()) :: binary()
  def build!(spec), do: spec |> build() |> Error.unwrap!()

  @doc """
  Builds the model described by `spec` and writes it to `path`.

  Returns `:ok`, or an error without writing anything when the build fails.
  The file appears whole or not at all: the model is written beside `path`
  and renamed over it, so a `Thunderbolt.ModelServer` watching `path` never
  loads half a model (a symlink at `path` is replaced, not followed).

      iex> spec = %{
      ...>   inputs: [%{name: "x", type: :f32, shape: {nil, 3}}],
      ...>   layers: [%{name: "probs", class_name: "Softmax", inbound: "x"}],
      ...>   outputs: ["probs"]
      ...> }
      iex> path = Path.join(System.tmp_dir!(), "thunderbolt_builder_doctest.onnx")
      iex> :ok = Thunderbolt.Builder.build_file(spec, path)
      iex> {:ok, session} = Thunderbolt.load(path)
      iex> hd(session.outputs).name
      "probs"
  """
  @spec build_file(spec(), Path.t()) :: :ok | {:error, Error.t()}
  def build_file(spec, path) do
    with {:ok, onnx} <- build(spec), do: write_onnx(onnx, path)
  end

  @doc false
  # Writes a serialized model; shared with Thunderbolt.Keras.convert_file/3.
  @spec write_onnx(binary(), Path.t()) :: :ok | {:error, Error.t()}
  def write_onnx(onnx, path) do
    # Never opening `path` itself also keeps a FIFO there from blocking the
    # write forever.
    tmp =
      Path.join(
        Path.dirname(path),
        ".#{Path.basename(path)}.#{System.unique_integer([:positive])}.tmp"
      )

    with :ok <- File.write(tmp, onnx, [:exclusive]),
         :ok <- File.rename(tmp, path) do
      :ok
    else
      {:error, reason} ->
        File.rm(tmp)
        {:error, Error.new(:load, "cannot write #{path}: #{:file.format_error(reason)}")}
    end
  end

  # Normalization into the plain maps the NIF decodes: string names, type
  # names, list shapes, string-keyed JSON-like configs, weights as
  # %{dtype, shape, data}.

  defp normalize(spec) when is_list(spec) do
    if Keyword.keyword?(spec), do: normalize(Map.new(spec)), else: bad_spec(spec)
  end

  defp normalize(%{} = spec) do
    with :ok <- known_keys(spec, @spec_keys, "the model spec"),
         {:ok, inputs} <- map_list(spec, :inputs, "the model spec", &input/1),
         {:ok, layers} <-
           map_list(Map.put_new(spec, :layers, []), :layers, "the model spec", &layer/1),
         {:ok, outputs} <- map_list(spec, :outputs, "the model spec", &output/1),
         {:ok, name} <- name(Map.get(spec, :name, "model"), "the model name"),
         {:ok, opset} <- opset(Map.get(spec, :opset)) do
      {:ok, %{name: name, inputs: inputs, layers: layers, outputs: outputs, opset: opset}}
    end
  end

  defp normalize(other), do: bad_spec(other)

  defp bad_spec(other) do
    invalid("a model spec is a map with :inputs, :layers and :outputs, got: #{inspect(other)}")
  end

  defp input(%{} = input) do
    with :ok <- known_keys(input, @input_keys, "an input"),
         {:ok, name} <- name(Map.get(input, :name), "an input name"),
         {:ok, dtype} <- dtype(Map.get(input, :type), name),
         {:ok, shape} <- shape(Map.get(input, :shape), name) do
      {:ok, %{name: name, dtype: dtype, shape: shape}}
    end
  end

  defp input(other),
    do: invalid("an input is a map with :name, :type and :shape, got: #{inspect(other)}")

  defp layer(%{} = layer) do
    with :ok <- known_keys(layer, @layer_keys, "a layer"),
         {:ok, name} <- name(Map.get(layer, :name), "a layer name"),
         {:ok, class_name} <-
           name(Map.get(layer, :class_name), "the class_name of layer #{inspect(name)}"),
         {:ok, config} <- config(Map.get(layer, :config, %{}), name),
         {:ok, inbound} <- inbound(Map.get(layer, :inbound, []), name),
         {:ok, weights} <- weights(Map.get(layer, :weights, []), name) do
      {:ok,
       %{name: name, class_name: class_name, config: config, inbound: inbound, weights: weights}}
    end
  end

  defp layer(other),
    do: invalid("a layer is a map with :name and :class_name, got: #{inspect(other)}")

  defp output(name) when is_binary(name) or is_atom(name) do
    with {:ok, name} <- name(name, "an output name"), do: {:ok, %{name: name, source: name}}
  end

  defp output(%{} = output) do
    with :ok <- known_keys(output, @output_keys, "an output"),
         {:ok, name} <- name(Map.get(output, :name), "an output name"),
         {:ok, source} <-
           name(Map.get(output, :source, name), "the source of output #{inspect(name)}") do
      {:ok, %{name: name, source: source}}
    end
  end

  defp output(other),
    do: invalid("an output is a name or %{name:, source:}, got: #{inspect(other)}")

  defp dtype(:bool, _input), do: {:ok, "bool"}

  defp dtype(type, input) do
    case Tensor.type(type) do
      {:ok, type} -> {:ok, Tensor.type_string(type)}
      {:error, _} -> invalid("input #{inspect(input)} has an unknown type: #{inspect(type)}")
    end
  end

  defp shape(shape, input) when is_tuple(shape), do: shape(Tuple.to_list(shape), input)

  defp shape(shape, input) when is_list(shape) do
    # ONNX dimensions are int64.
    if not List.improper?(shape) and
         Enum.all?(shape, &(is_nil(&1) or (is_integer(&1) and &1 in 0..@most_dim))) do
      {:ok, shape}
    else
      invalid(
        "input #{inspect(input)}: a shape holds nil and integers from 0 to 2^63 - 1, got: #{inspect(shape)}"
      )
    end
  end

  defp shape(shape, input),
    do:
      invalid(
        "input #{inspect(input)}: the shape must be a tuple or list, got: #{inspect(shape)}"
      )

  defp config(config, layer) when is_list(config) do
    if Keyword.keyword?(config),
      do: config(Map.new(config), layer),
      else: bad_config(config, layer)
  end

  defp config(%{} = config, layer) do
    {:ok, json_like(config)}
  catch
    {:bad_config, value} ->
      invalid("layer #{inspect(layer)}: cannot put #{inspect(value)} in a config")
  end

  defp config(other, layer), do: bad_config(other, layer)

  defp bad_config(config, layer),
    do: invalid("layer #{inspect(layer)}: the config must be a map, got: #{inspect(config)}")

  defp json_like(%{} = map) do
    Map.new(map, fn
      {key, value} when is_binary(key) -> {key, json_like(value)}
      {key, value} when is_atom(key) -> {Atom.to_string(key), json_like(value)}
      {key, _} -> throw({:bad_config, key})
    end)
  end

  defp json_like(list) when is_list(list) do
    if List.improper?(list), do: throw({:bad_config, list}), else: Enum.map(list, &json_like/1)
  end

  defp json_like(tuple) when is_tuple(tuple), do: tuple |> Tuple.to_list() |> json_like()
  defp json_like(value) when is_boolean(value) or is_nil(value) or is_number(value), do: value
  defp json_like(atom) when is_atom(atom), do: Atom.to_string(atom)
  defp json_like(string) when is_binary(string), do: string
  defp json_like(other), do: throw({:bad_config, other})

  defp inbound(name, layer) when is_binary(name) or is_atom(name), do: inbound([name], layer)

  defp inbound(names, layer) when is_list(names) do
    collect(names, &name(&1, "an inbound reference of layer #{inspect(layer)}"))
  end

  defp inbound(other, layer),
    do:
      invalid(
        "layer #{inspect(layer)}: inbound must be a name or a list of names, got: #{inspect(other)}"
      )

  defp weights(weights, layer) when is_list(weights) do
    if List.improper?(weights),
      do: bad_weights(weights, layer),
      else: weight_maps(weights, layer)
  end

  defp weights(other, layer), do: bad_weights(other, layer)

  defp weight_maps(weights, layer) do
    weights
    |> Enum.with_index()
    |> collect(fn {weight, i} ->
      case Tensor.coerce(weight) do
        # A struct built by hand may hold anything; the NIF checks the
        # data's length against the shape.
        {:ok, %Tensor{type: type, shape: shape, data: data} = tensor} ->
          if Tensor.well_formed?(tensor),
            do:
              {:ok, %{dtype: Tensor.type_string(type), shape: Tuple.to_list(shape), data: data}},
            else: malformed_weight(weight, i, layer)

        {:error, _} ->
          invalid(
            "layer #{inspect(layer)}: weight #{i} is not a tensor: #{inspect(weight, limit: 5)}"
          )
      end
    end)
  end

  defp malformed_weight(weight, i, layer),
    do: invalid("layer #{inspect(layer)}: weight #{i} is a malformed tensor: #{inspect(weight)}")

  defp bad_weights(other, layer),
    do:
      invalid(
        "layer #{inspect(layer)}: weights must be a list of tensors, got: #{inspect(other, limit: 5)}"
      )

  defp opset(nil), do: {:ok, nil}
  defp opset(opset) when is_integer(opset) and opset in -@most_dim..@most_dim, do: {:ok, opset}
  defp opset(opset) when is_integer(opset), do: invalid("unsupported opset #{opset}")
  defp opset(other), do: invalid("opset must be an integer, got: #{inspect(other)}")

  defp name(name, _what) when is_binary(name), do: {:ok, name}

  defp name(name, _what) when is_atom(name) and not is_nil(name) and not is_boolean(name),
    do: {:ok, Atom.to_string(name)}

  defp name(other, what), do: invalid("#{what} must be a string, got: #{inspect(other)}")

  defp known_keys(map, allowed, what) do
    case Map.keys(map) -- allowed do
      [] ->
        :ok

      unknown ->
        invalid("#{what} has unknown keys #{inspect(unknown)} (allowed: #{inspect(allowed)})")
    end
  end

  defp map_list(map, key, what, fun) do
    case Map.fetch(map, key) do
      {:ok, list} when is_list(list) ->
        collect(list, fun)

      {:ok, other} ->
        invalid("#{key} of #{what} must be a list, got: #{inspect(other, limit: 5)}")

      :error ->
        invalid("#{what} needs #{inspect(key)}")
    end
  end

  # Lists from callers may be improper ([a | b]), which Enum refuses with a
  # raise; they get the same error as any other malformed value.
  defp collect(list, fun) do
    if List.improper?(list),
      do: invalid("expected a proper list, got: #{inspect(list, limit: 5)}"),
      else: reduce_items(list, fun)
  end

  defp reduce_items(list, fun) do
    list
    |> Enum.reduce_while({:ok, []}, fn item, {:ok, acc} ->
      case fun.(item) do
        {:ok, value} -> {:cont, {:ok, [value | acc]}}
        {:error, _} = error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, values} -> {:ok, Enum.reverse(values)}
      error -> error
    end
  end

  defp invalid(message), do: {:error, Error.new(:invalid_input, message)}
end
