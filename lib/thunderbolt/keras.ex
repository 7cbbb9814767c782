defmodule Thunderbolt.Keras do
  @moduledoc """
  Converts Keras models to ONNX without Python.

  Reads Keras 3 `.keras` files and legacy whole-model `.h5` files (Keras 2,
  tf.keras, or Keras 3's `model.save("model.h5")`), then builds an ONNX model
  with the same predictions:

      {:ok, onnx} = Thunderbolt.Keras.convert("model.keras", input_dtype: :s64)
      {:ok, session} = Thunderbolt.load({:binary, onnx})

  Supported: Functional models (branches, several inputs and outputs, shared
  layers, constants such as a precomputed positional encoding added in the
  graph), Sequential models, models nested in models, every layer
  `Thunderbolt.Builder` converts, and Cerebros's
  `cerebrosllmutils>InterleavedRoPE`. The weights are found by Keras's own
  naming rule, so layer names do not matter.

  The same conversion is available from the shell as
  `mix thunderbolt.convert MODEL.keras OUT.onnx`.
  """

  alias Thunderbolt.{Error, Native}

  @convert_defaults [
    input_dtype: nil,
    input_dtypes: %{},
    output_names: nil,
    opset: nil,
    custom_layers: %{}
  ]

  @type source :: Path.t() | {:binary, binary()}

  @doc """
  Converts a `.keras` or legacy `.h5` model to a serialized ONNX model.

  The format is detected from the content, not the file name. `source` is a
  path or `{:binary, bytes}`.

  ## Options

    * `:input_dtype` — element type for every graph input, replacing the
      Keras dtype, for example `:s64` for token ids where Keras used int32
      (the original ONNX tooling used int64). Any `Thunderbolt.Tensor` type
      name the builder supports: `:f32`, `:f64`, `:f16`, `:s8`, `:s16`,
      `:s32`, `:s64`, `:u8`, `:bool`.
    * `:input_dtypes` — map of input name to type, for models whose inputs
      need different types; takes precedence over `:input_dtype`.
    * `:output_names` — names of the ONNX outputs, one per model output, in
      order. By default each output is named after the Keras layer that
      produces it.
    * `:opset` — the ONNX opset (default: the builder's, 18).
    * `:custom_layers` — map of a custom layer's registered name
      (`"package>Name"`) or class name to the built-in converter that handles
      it, for custom layers that compute the same thing as a built-in one,
      e.g. `%{"mypkg>MyDense" => "Dense"}`.

  ## Examples

      iex> {:ok, onnx} = Thunderbolt.Keras.convert("test/fixtures/keras/sequential.keras")
      iex> {:ok, session} = Thunderbolt.load({:binary, onnx})
      iex> hd(session.inputs).name
      "x"

      iex> {:error, %Thunderbolt.Error{kind: :build, message: message}} =
      ...>   Thunderbolt.Keras.convert({:binary, "not a model"})
      iex> message =~ "expected a .keras zip archive or a legacy .h5"
      true
  """
  @spec convert(source(), keyword()) :: {:ok, binary()} | {:error, Error.t()}
  def convert(source, opts \\ []) do
    with {:ok, opts} <- validate(opts),
         {:ok, native_source} <- native_source(source) do
      native_source |> Native.keras_convert(opts) |> Error.from_native()
    end
  end

  @doc """
  Like `convert/2`, raising `Thunderbolt.Error` on failure.
  """
  @spec convert!(source(), keyword()) :: binary()
  def convert!(source, opts \\ []), do: source |> convert(opts) |> Error.unwrap!()

  @doc """
  Converts the model at `path` and writes the ONNX model to `out_path`.

  Takes the options of `convert/2`. Returns `:ok`, or an error without
  writing anything.

      iex> out = Path.join(System.tmp_dir!(), "thunderbolt_doctest.onnx")
      iex> :ok = Thunderbolt.Keras.convert_file("test/fixtures/keras/sequential.keras", out)
      iex> File.exists?(out)
      true
  """
  @spec convert_file(source(), Path.t(), keyword()) :: :ok | {:error, Error.t()}
  def convert_file(path, out_path, opts \\ []) do
    with {:ok, onnx} <- convert(path, opts), do: Thunderbolt.Builder.write_onnx(onnx, out_path)
  end

  @doc """
  The number of weight values in a serialized ONNX model: the elements of its
  floating-point initializers. For most models this is Keras's
  `count_params()`; it is lower where the builder folds weights, as for
  `BatchNormalization`, which becomes one scale and one offset per channel.

      iex> onnx = Thunderbolt.Keras.convert!("test/fixtures/keras/text_classifier.keras")
      iex> # Embedding(40, 8), Dense(8 -> 16), Dense(16 -> 16), Dense(16 -> 40)
      iex> Thunderbolt.Keras.parameter_count(onnx)
      {:ok, 40 * 8 + (8 * 16 + 16) + (16 * 16 + 16) + (16 * 40 + 40)}
  """
  @spec parameter_count(binary()) :: {:ok, non_neg_integer()} | {:error, Error.t()}
  def parameter_count(onnx) when is_binary(onnx) do
    onnx |> Native.keras_parameter_count() |> Error.from_native()
  end

  defp native_source({:binary, bytes}) when is_binary(bytes), do: {:ok, {:binary, bytes}}

  defp native_source(path) when is_binary(path) do
    case File.stat(path) do
      {:ok, %File.Stat{type: :regular}} ->
        {:ok, {:file, path}}

      {:ok, %File.Stat{}} ->
        {:error, Error.new(:load, "#{path} is not a regular file")}

      {:error, _} ->
        {:error, Error.new(:load, "no such model file: #{path}")}
    end
  end

  defp native_source(other) do
    {:error,
     Error.new(:invalid_input, "expected a path or {:binary, bytes}, got: #{inspect(other)}")}
  end

  defp validate(opts) do
    with {:ok, opts} <- keyword_validate(opts),
         {:ok, input_dtype} <- dtype_option(:input_dtype, opts[:input_dtype]),
         {:ok, input_dtypes} <- input_dtypes(opts[:input_dtypes]),
         {:ok, output_names} <- output_names(opts[:output_names]),
         {:ok, opset} <- opset(opts[:opset]),
         {:ok, custom_layers} <- custom_layers(opts[:custom_layers]) do
      {:ok,
       %{
         input_dtype: input_dtype,
         input_dtypes: input_dtypes,
         output_names: output_names,
         opset: opset,
         custom_layers: custom_layers
       }}
    end
  end

  defp keyword_validate(opts) when is_list(opts) do
    if List.improper?(opts),
      do: {:error, Error.new(:invalid_option, "options must be a keyword list")},
      else: {:ok, Keyword.validate!(opts, @convert_defaults)}
  rescue
    e in ArgumentError -> {:error, Error.new(:invalid_option, Exception.message(e))}
  end

  defp keyword_validate(_opts),
    do: {:error, Error.new(:invalid_option, "options must be a keyword list")}

  defp dtype_option(_key, nil), do: {:ok, nil}

  defp dtype_option(key, type) do
    case Thunderbolt.Tensor.type(type) do
      {:ok, {:u, 8}} when type == :bool ->
        {:ok, "bool"}

      {:ok, {kind, bits}} ->
        {:ok, "#{kind}#{bits}"}

      {:error, _} ->
        {:error, Error.new(:invalid_option, "#{key}: unknown type #{inspect(type)}")}
    end
  end

  defp input_dtypes(map) when is_map(map) do
    Enum.reduce_while(map, {:ok, []}, fn {name, type}, {:ok, acc} ->
      case dtype_option(:input_dtypes, type) do
        {:ok, dtype} -> {:cont, {:ok, [{to_string(name), dtype} | acc]}}
        error -> {:halt, error}
      end
    end)
  end

  defp input_dtypes(other),
    do: {:error, Error.new(:invalid_option, "input_dtypes must be a map, got #{inspect(other)}")}

  defp output_names(nil), do: {:ok, nil}

  defp output_names(names) when is_list(names) do
    if not List.improper?(names) and Enum.all?(names, &(is_binary(&1) or is_atom(&1))) do
      {:ok, Enum.map(names, &to_string/1)}
    else
      {:error, Error.new(:invalid_option, "output_names must be strings, got #{inspect(names)}")}
    end
  end

  defp output_names(other),
    do: {:error, Error.new(:invalid_option, "output_names must be a list, got #{inspect(other)}")}

  defp opset(nil), do: {:ok, nil}
  # The builder answers for the supported range; this keeps the NIF's
  # argument a machine word.
  defp opset(n) when is_integer(n) and n in 1..0xFFFF_FFFF, do: {:ok, n}

  defp opset(other),
    do:
      {:error,
       Error.new(:invalid_option, "opset must be a positive integer, got #{inspect(other)}")}

  defp custom_layers(map) when is_map(map) do
    if Enum.all?(map, fn {k, v} -> is_binary(k) and is_binary(v) end) do
      {:ok, Enum.to_list(map)}
    else
      {:error,
       Error.new(
         :invalid_option,
         "custom_layers must map strings to strings, got #{inspect(map)}"
       )}
    end
  end

  defp custom_layers(other),
    do: {:error, Error.new(:invalid_option, "custom_layers must be a map, got #{inspect(other)}")}
end
