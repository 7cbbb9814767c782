defmodule Mix.Tasks.Thunderbolt.Convert do
  @shortdoc "Converts a Keras .keras or .h5 model to ONNX"

  @moduledoc """
  Converts a Keras model to ONNX, without Python.

      mix thunderbolt.convert MODEL.keras|MODEL.h5 OUT.onnx [options]

  ## Options

    * `--input-dtype TYPE` — element type for every input, for example `s64`
      for int64 token ids (Keras saves int32); see `Thunderbolt.Keras.convert/2`
    * `--output-names a,b` — names of the ONNX outputs, in order
    * `--opset N` — the ONNX opset
    * `--check` — also load the result in ONNX Runtime, run it once on zeros
      and print its inputs, outputs and parameter count

  ## Example

      mix thunderbolt.convert cerebros_trained.keras cerebros.onnx --input-dtype s64 --check
  """
  use Mix.Task

  alias Thunderbolt.{Keras, Tensor}

  @switches [input_dtype: :string, output_names: :string, opset: :integer, check: :boolean]

  @impl true
  def run(args) do
    {opts, positional, invalid} = OptionParser.parse(args, strict: @switches)

    case {positional, invalid} do
      {[model, out], []} ->
        Mix.Task.run("app.start")
        convert(model, out, opts)

      {_, [_ | _]} ->
        Mix.raise("unknown or invalid options: #{inspect(invalid)}\n\n#{usage()}")

      _ ->
        Mix.raise(usage())
    end
  end

  defp usage do
    "usage: mix thunderbolt.convert MODEL.keras|MODEL.h5 OUT.onnx " <>
      "[--input-dtype s64] [--output-names a,b] [--opset N] [--check]"
  end

  defp convert(model, out, opts) do
    convert_opts =
      [
        input_dtype: opts[:input_dtype] && String.to_atom(opts[:input_dtype]),
        output_names: opts[:output_names] && String.split(opts[:output_names], ","),
        opset: opts[:opset]
      ]
      |> Enum.reject(fn {_, v} -> is_nil(v) end)

    {time_us, result} = :timer.tc(fn -> Keras.convert(model, convert_opts) end)

    with {:ok, onnx} <- result,
         :ok <- write(out, onnx) do
      Mix.shell().info(
        "wrote #{out} (#{byte_size(onnx)} bytes) in #{Float.round(time_us / 1000, 1)} ms"
      )

      if opts[:check], do: check(out, onnx)
    else
      {:error, error} -> Mix.raise("conversion failed: #{Exception.message(error)}")
    end
  end

  defp write(out, onnx) do
    case File.write(out, onnx) do
      :ok ->
        :ok

      {:error, reason} ->
        {:error,
         %Thunderbolt.Error{
           kind: :load,
           message: "cannot write #{out}: #{:file.format_error(reason)}"
         }}
    end
  end

  defp check(out, onnx) do
    session =
      case Thunderbolt.load({:binary, onnx}) do
        {:ok, session} -> session
        {:error, e} -> Mix.raise("ONNX Runtime cannot load #{out}: #{Exception.message(e)}")
      end

    feeds = Map.new(session.inputs, fn input -> {input.name, zeros(input)} end)

    outputs =
      case Thunderbolt.run(session, feeds) do
        {:ok, outputs} ->
          outputs

        {:error, e} ->
          Mix.raise("ONNX Runtime cannot run #{out} on zeros: #{Exception.message(e)}")
      end

    {:ok, params} = Keras.parameter_count(onnx)
    shell = Mix.shell()
    shell.info("inputs:")
    Enum.each(session.inputs, &shell.info("  #{describe(&1)}"))
    shell.info("outputs (on zeros, batch 1):")

    Enum.each(session.outputs, fn output ->
      tensor = Map.fetch!(outputs, output.name)
      shell.info("  #{describe(output)} -> #{inspect(tensor.shape)}")
    end)

    shell.info("parameters: #{params}")
  end

  defp zeros(%{type: type, shape: shape}) do
    dims = shape |> Tuple.to_list() |> Enum.map(&(&1 || 1))
    bytes = Enum.product(dims) * Tensor.element_bytes(type)
    Tensor.from_binary(:binary.copy(<<0>>, bytes), type, dims)
  end

  defp describe(%{name: name, type: type, shape: shape}) do
    dims = shape |> Tuple.to_list() |> Enum.map_join(", ", &(&1 || "batch"))
    "#{name}: #{Tensor.type_string(type)}[#{dims}]"
  end
end
