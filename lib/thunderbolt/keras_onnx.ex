defmodule Thunderbolt.KerasONNX do
  @moduledoc """
  The `KerasONNX` interface of the application Thunderbolt serves, on top of
  `Thunderbolt.load/2` and `Thunderbolt.run/3`, so code written against it
  keeps working:

      {:ok, session} = Thunderbolt.KerasONNX.load!("priv/models/cerebros_trained.onnx")
      ids = Thunderbolt.Tensor.new([Enum.to_list(1..40)], type: :s64)
      input = %Thunderbolt.KerasONNX.Input{tensor: ids, shape: {1, 40}, dtype: {:s, 64}}
      {:ok, output} = Thunderbolt.KerasONNX.infer(session, input)
      Thunderbolt.KerasONNX.Output.top_k(output, 5)

  Differences from the original, all deliberate:

    * `inference_time_us` is measured (the original always reported `0`).
    * Every output is reachable: `output.metadata.outputs` holds them all by
      name, and the `:output` option picks the one in `output.tensor`.
    * A model with several inputs takes `Input.tensor` as a map from input
      name to tensor.
    * `infer_batch/3` makes one ONNX Runtime call for the whole batch.
    * The load options are honoured.

  Errors are tagged tuples in the original's vocabulary:
  `{:file_not_found, path}`, `{:invalid_extension, path}`,
  `{:invalid_option, message}`, `{:load_failed, %Thunderbolt.Error{}}`,
  `{:invalid_input, message}` and `{:inference_failed, %Thunderbolt.Error{}}`.
  """

  alias Thunderbolt.{Error, ModelDir, Session, Tensor}
  alias Thunderbolt.KerasONNX.{Input, Output}

  @ort_provider_names %{
    "CPUExecutionProvider" => :cpu,
    "CUDAExecutionProvider" => :cuda,
    "TensorrtExecutionProvider" => :tensorrt,
    "ROCMExecutionProvider" => :rocm,
    "OpenVINOExecutionProvider" => :openvino,
    "CoreMLExecutionProvider" => :coreml,
    "DmlExecutionProvider" => :directml,
    "XnnpackExecutionProvider" => :xnnpack
  }
  # onnxruntime's Python GraphOptimizationLevel values.
  @optimization_levels %{0 => :disable, 1 => :basic, 2 => :extended, 99 => :all}

  @type error ::
          {:file_not_found, String.t()}
          | {:invalid_extension, String.t()}
          | {:invalid_option, String.t()}
          | {:load_failed, Error.t()}
          | {:invalid_input, String.t()}
          | {:inference_failed, Error.t()}

  @doc """
  Loads an ONNX model. Despite the `!`, it returns `{:ok, session}` or
  `{:error, reason}`, as the original did.

  A relative `model_path` is looked for, in order: as given (relative to
  the current directory); under the application's `priv/` directory (a
  leading `priv/` is allowed); then under `Thunderbolt.ModelDir.dir/0`
  (`config :thunderbolt, :model_dir`, default `priv/models`). The first
  regular file found wins. An absolute path is used as it is. The file must
  end in `.onnx`.

  ## Options

    * `:execution_providers` — providers in order of preference, as atoms
      (`:cuda`, `:cpu`, ...) or onnxruntime's names
      (`"CUDAExecutionProvider"`); CPU is always the last resort.
    * `:optimization_level` — `:disable`, `:basic`, `:extended`, `:all`, or
      onnxruntime's numbers `0`, `1`, `2`, `99` (default `:all`).
    * `:intra_op_num_threads` — threads within one operator (default `1`;
      `0` lets ONNX Runtime choose).
    * `:inter_op_num_threads` — threads across operators (default `1`).
    * `:otp_app` — the application whose `priv/` is searched (default
      `config :thunderbolt, :otp_app`, else `:thunderbolt`).

  ## Examples

      iex> Thunderbolt.KerasONNX.load!("no/such/model.onnx")
      {:error, {:file_not_found, "no/such/model.onnx"}}
  """
  @spec load!(Path.t(), keyword()) :: {:ok, Session.t()} | {:error, error()}
  def load!(model_path, opts \\ []) do
    with {:ok, load_opts, otp_app} <- load_options(opts),
         {:ok, path} <- find(model_path, otp_app),
         :ok <- check_extension(path, model_path) do
      case Thunderbolt.load(path, load_opts) do
        {:ok, session} -> {:ok, session}
        {:error, %Error{kind: :invalid_option, message: m}} -> {:error, {:invalid_option, m}}
        {:error, error} -> {:error, {:load_failed, error}}
      end
    end
  end

  @doc """
  Runs the model on one `Thunderbolt.KerasONNX.Input`.

  ## Options

    * `:output` — the name of the output to put in `output.tensor` (default
      the model's first output). All outputs are in `output.metadata.outputs`.
    * `:outputs` — compute only these outputs (default all).
    * `:scheduler` — as in `Thunderbolt.run/3`.

  When the input holds Nx tensors the outputs are Nx tensors too.
  """
  @spec infer(Session.t(), Input.t(), keyword()) :: {:ok, Output.t()} | {:error, error()}
  def infer(session, input, opts \\ [])

  def infer(%Session{} = session, %Input{} = input, opts) do
    with {:ok, output_name, run_opts} <- infer_options(session, opts),
         {:ok, input} <- checked(input),
         {:ok, tensors} <- Input.tensors(input),
         {:ok, outputs, time_us} <- timed_run(session, tensors, run_opts) do
      {:ok, output(outputs, output_name, input, time_us, %{})}
    end
  end

  def infer(session, input, _opts), do: bad_arguments(session, input)

  @doc """
  Runs several inputs as one batch: their tensors are stacked along the
  batch axis, the model runs once, and the result is split back, one
  `Thunderbolt.KerasONNX.Output` per input, in order. Each output's
  `inference_time_us` is the time of the whole batch, and its
  `metadata.batch_size` the number of inputs.

  Inputs whose first dimension the model declares as dynamic are stacked;
  inputs with a fixed first dimension (such as a positional table) must be
  the same in every `Input` and are passed once. Options are those of
  `infer/3`.
  """
  @spec infer_batch(Session.t(), [Input.t()], keyword()) ::
          {:ok, [Output.t()]} | {:error, error()}
  def infer_batch(session, inputs, opts \\ [])

  def infer_batch(%Session{} = session, [_ | _] = inputs, opts) do
    with :ok <- all_inputs(inputs),
         {:ok, inputs} <- check_all(inputs),
         {:ok, output_name, run_opts} <- infer_options(session, opts),
         {:ok, by_name} <- inputs_by_name(session, inputs),
         {:ok, stacked, rows} <- stack(session, by_name),
         {:ok, outputs, time_us} <- timed_run(session, stacked, run_opts) do
      total = Enum.sum(rows)
      meta = %{batch_size: length(inputs)}

      {outputs_per_input, _offset} =
        Enum.map_reduce(rows, 0, fn n, offset ->
          {Map.new(outputs, fn {name, t} -> {name, slice(t, offset, n, total)} end), offset + n}
        end)

      {:ok,
       inputs
       |> Enum.zip(outputs_per_input)
       |> Enum.map(fn {input, outs} -> output(outs, output_name, input, time_us, meta) end)}
    end
  end

  def infer_batch(%Session{}, [], _opts),
    do: {:error, {:invalid_input, "infer_batch needs at least one input"}}

  def infer_batch(session, inputs, _opts), do: bad_arguments(session, inputs)

  @doc """
  Releases a session. Returns `:ok`.

  A `Thunderbolt.Session` needs no explicit close: its native memory is freed
  when the last process holding it lets it go, so after `close/1` simply
  drop the reference. The function exists so that code written for the
  original keeps compiling.
  """
  @spec close(Session.t()) :: :ok
  def close(%Session{}), do: :ok

  @doc """
  What the session is: its real `inputs` and `outputs` (name, type, shape
  with `nil` for dynamic dimensions), the execution `provider` in use and
  all `providers`, the ONNX Runtime `runtime_version`, and the model's
  `producer`, `opset` and `custom` metadata.
  """
  @spec metadata(Session.t()) :: map()
  def metadata(%Session{} = session) do
    runtime = Thunderbolt.runtime_info() || %{}

    %{
      inputs: session.inputs,
      outputs: session.outputs,
      provider: List.first(session.providers),
      providers: session.providers,
      warnings: session.warnings,
      runtime_version: runtime["version"],
      producer: session.metadata.producer,
      opset: session.metadata.opset,
      custom: session.metadata.custom
    }
  end

  # Loading

  defp load_options(opts) do
    allowed = [
      :execution_providers,
      :optimization_level,
      :intra_op_num_threads,
      :inter_op_num_threads,
      :otp_app
    ]

    with {:ok, opts} <- validate_keys(opts, allowed),
         {:ok, providers} <- providers(Keyword.get(opts, :execution_providers, [:cpu])),
         {:ok, level} <- optimization_level(Keyword.get(opts, :optimization_level, :all)) do
      load_opts = [
        execution_providers: providers,
        optimization_level: level,
        intra_op_threads: Keyword.get(opts, :intra_op_num_threads, 1),
        inter_op_threads: Keyword.get(opts, :inter_op_num_threads, 1)
      ]

      {:ok, load_opts,
       Keyword.get(opts, :otp_app, Application.get_env(:thunderbolt, :otp_app, :thunderbolt))}
    end
  end

  defp providers(list) when is_list(list) do
    Enum.reduce_while(list, {:ok, []}, fn provider, {:ok, acc} ->
      case Map.get(@ort_provider_names, provider, provider) do
        atom when is_atom(atom) ->
          {:cont, {:ok, acc ++ [atom]}}

        other ->
          {:halt, {:error, {:invalid_option, "unknown execution provider #{inspect(other)}"}}}
      end
    end)
  end

  defp providers(other),
    do: {:error, {:invalid_option, ":execution_providers must be a list, got #{inspect(other)}"}}

  defp optimization_level(level) when is_map_key(@optimization_levels, level),
    do: {:ok, Map.fetch!(@optimization_levels, level)}

  defp optimization_level(level), do: {:ok, level}

  defp find(model_path, otp_app) when is_binary(model_path) do
    candidates =
      case Path.type(model_path) do
        :absolute ->
          [model_path]

        _ ->
          [model_path | priv_candidates(model_path, otp_app)] ++ [model_dir_candidate(model_path)]
      end

    case Enum.find(candidates, &File.regular?/1) do
      nil -> {:error, {:file_not_found, model_path}}
      path -> {:ok, Path.expand(path)}
    end
  end

  defp find(model_path, _otp_app),
    do: {:error, {:invalid_input, "model_path must be a string, got #{inspect(model_path)}"}}

  defp priv_candidates(path, otp_app) do
    case :code.priv_dir(otp_app) do
      {:error, _} ->
        []

      priv ->
        priv = List.to_string(priv)
        under_priv = Path.join(priv, path)

        case Path.split(path) do
          ["priv" | rest] when rest != [] -> [under_priv, Path.join([priv | rest])]
          _ -> [under_priv]
        end
    end
  end

  defp model_dir_candidate(path), do: Path.join(ModelDir.dir(), path)

  defp check_extension(path, model_path) do
    if Path.extname(path) == ".onnx", do: :ok, else: {:error, {:invalid_extension, model_path}}
  end

  # Running

  defp infer_options(%Session{outputs: specs}, opts) do
    with {:ok, opts} <- validate_keys(opts, [:output, :outputs, :scheduler]) do
      names = Enum.map(specs, & &1.name)
      computed = if opts[:outputs], do: Enum.map(opts[:outputs], &to_string/1), else: names
      chosen = if opts[:output], do: to_string(opts[:output]), else: List.first(computed)

      if chosen in computed do
        {:ok, chosen, Keyword.take(opts, [:outputs, :scheduler])}
      else
        {:error,
         {:invalid_option,
          "unknown output #{inspect(opts[:output])}; the computed outputs are #{inspect(computed)}"}}
      end
    end
  end

  defp timed_run(session, tensors, run_opts) do
    start = System.monotonic_time()
    result = Thunderbolt.run(session, tensors, run_opts)
    time_us = System.convert_time_unit(System.monotonic_time() - start, :native, :microsecond)

    case result do
      {:ok, outputs} ->
        {:ok, outputs, time_us}

      {:error, %Error{kind: kind, message: m}} when kind in [:invalid_input, :invalid_option] ->
        {:error, {:invalid_input, m}}

      {:error, error} ->
        {:error, {:inference_failed, error}}
    end
  end

  defp output(outputs, name, %Input{} = input, time_us, meta) do
    %Tensor{shape: shape, type: type} = Map.fetch!(outputs, name)

    outputs =
      if Input.nx?(input),
        do: Map.new(outputs, fn {k, t} -> {k, Tensor.to_nx(t)} end),
        else: outputs

    %Output{
      tensor: Map.fetch!(outputs, name),
      shape: shape,
      dtype: type,
      inference_time_us: time_us,
      metadata:
        input.metadata |> Map.merge(meta) |> Map.merge(%{output_name: name, outputs: outputs})
    }
  end

  # An Input may be written as a struct literal, as the original's users
  # do; check it as Input.new/4 would.
  defp checked(%Input{tensor: tensor, shape: shape, dtype: dtype, metadata: metadata}),
    do: Input.new(tensor, shape, dtype, metadata || %{})

  # Batching

  defp all_inputs(inputs) do
    case Enum.find(inputs, &(not is_struct(&1, Input))) do
      nil ->
        :ok

      other ->
        {:error,
         {:invalid_input,
          "expected %Thunderbolt.KerasONNX.Input{} values, got: #{inspect(other, limit: 5)}"}}
    end
  end

  defp check_all(inputs) do
    Enum.reduce_while(inputs, {:ok, []}, fn input, {:ok, acc} ->
      case checked(input) do
        {:ok, input} -> {:cont, {:ok, [input | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, inputs} -> {:ok, Enum.reverse(inputs)}
      error -> error
    end
  end

  # Each input's tensors as a map by the model's input names.
  defp inputs_by_name(%Session{inputs: specs}, inputs) do
    names = specs |> Enum.map(& &1.name) |> Enum.sort()

    Enum.reduce_while(inputs, {:ok, []}, fn input, {:ok, acc} ->
      result =
        case Input.tensors(input) do
          {:ok, %Tensor{} = tensor} when length(specs) == 1 ->
            {:ok, %{hd(specs).name => tensor}}

          {:ok, %Tensor{}} ->
            {:error,
             {:invalid_input,
              "the model has #{length(specs)} inputs #{inspect(names)}; give Input.tensor as a map"}}

          {:ok, map} ->
            map = Map.new(map, fn {k, v} -> {to_string(k), v} end)

            if Enum.sort(Map.keys(map)) == names,
              do: {:ok, map},
              else:
                {:error,
                 {:invalid_input,
                  "inputs #{inspect(Enum.sort(Map.keys(map)))} do not match the model's inputs #{inspect(names)}"}}

          error ->
            error
        end

      case result do
        {:ok, map} -> {:cont, {:ok, [map | acc]}}
        error -> {:halt, error}
      end
    end)
    |> case do
      {:ok, maps} -> {:ok, Enum.reverse(maps)}
      error -> error
    end
  end

  defp stack(%Session{inputs: specs}, by_name) do
    {batched, fixed} =
      Enum.split_with(specs, &(tuple_size(&1.shape) > 0 and elem(&1.shape, 0) == nil))

    with :ok <- require_batch_axis(batched),
         {:ok, rows} <- rows_per_input(batched, by_name),
         {:ok, stacked} <- stack_batched(batched, by_name, Enum.sum(rows)),
         {:ok, shared} <- shared_fixed(fixed, by_name) do
      {:ok, Map.merge(stacked, shared), rows}
    end
  end

  defp require_batch_axis([]),
    do:
      {:error,
       {:invalid_input,
        "the model declares no dynamic batch dimension, so inputs cannot be stacked"}}

  defp require_batch_axis(_batched), do: :ok

  defp rows_per_input(batched, by_name) do
    Enum.reduce_while(by_name, {:ok, []}, fn tensors, {:ok, acc} ->
      counts =
        batched
        |> Enum.map(fn spec -> Map.fetch!(tensors, spec.name).shape end)
        |> Enum.map(fn shape -> if tuple_size(shape) > 0, do: elem(shape, 0) end)
        |> Enum.uniq()

      case counts do
        [n] when is_integer(n) ->
          {:cont, {:ok, [n | acc]}}

        _ ->
          {:halt,
           {:error,
            {:invalid_input,
             "the batched inputs of one Input disagree on the number of rows: #{inspect(counts)}"}}}
      end
    end)
    |> case do
      {:ok, rows} -> {:ok, Enum.reverse(rows)}
      error -> error
    end
  end

  defp stack_batched(batched, by_name, total) do
    Enum.reduce_while(batched, {:ok, %{}}, fn spec, {:ok, acc} ->
      tensors = Enum.map(by_name, &Map.fetch!(&1, spec.name))
      [%Tensor{type: type, shape: shape} | _] = tensors
      tail = Tuple.delete_at(shape, 0)

      if Enum.all?(tensors, &(&1.type == type and Tuple.delete_at(&1.shape, 0) == tail)) do
        data = tensors |> Enum.map(& &1.data) |> IO.iodata_to_binary()
        stacked = %Tensor{type: type, shape: put_elem(shape, 0, total), data: data}
        {:cont, {:ok, Map.put(acc, spec.name, stacked)}}
      else
        {:halt,
         {:error,
          {:invalid_input,
           "input #{inspect(spec.name)}: every Input must have the same type and non-batch dimensions to be stacked"}}}
      end
    end)
  end

  defp shared_fixed(fixed, by_name) do
    Enum.reduce_while(fixed, {:ok, %{}}, fn spec, {:ok, acc} ->
      case by_name |> Enum.map(&Map.fetch!(&1, spec.name)) |> Enum.uniq() do
        [tensor] ->
          {:cont, {:ok, Map.put(acc, spec.name, tensor)}}

        _ ->
          {:halt,
           {:error,
            {:invalid_input,
             "input #{inspect(spec.name)} has no batch axis, so every Input must give the same value for it"}}}
      end
    end)
  end

  # Rows [offset, offset + n) of a batched output; an output without the
  # batch axis goes whole to every input.
  defp slice(%Tensor{shape: shape, data: data} = t, offset, n, total)
       when tuple_size(shape) > 0 and elem(shape, 0) == total and total > 0 do
    row_bytes = div(byte_size(data), total)

    %{
      t
      | shape: put_elem(shape, 0, n),
        data: binary_part(data, offset * row_bytes, n * row_bytes)
    }
  end

  defp slice(tensor, _offset, _n, _total), do: tensor

  # Shared

  defp validate_keys(opts, allowed) when is_list(opts) do
    if Keyword.keyword?(opts) do
      case Enum.uniq(Keyword.keys(opts)) -- allowed do
        [] ->
          {:ok, opts}

        unknown ->
          {:error,
           {:invalid_option, "unknown options #{inspect(unknown)}; known: #{inspect(allowed)}"}}
      end
    else
      {:error, {:invalid_option, "options must be a keyword list"}}
    end
  end

  defp validate_keys(_opts, _allowed),
    do: {:error, {:invalid_option, "options must be a keyword list"}}

  defp bad_arguments(session, input) do
    cond do
      not is_struct(session, Session) ->
        {:error,
         {:invalid_input,
          "expected a Thunderbolt.Session from load!/2, got: #{inspect(session, limit: 5)}"}}

      true ->
        {:error,
         {:invalid_input,
          "expected a %Thunderbolt.KerasONNX.Input{}, got: #{inspect(input, limit: 5)}"}}
    end
  end
end
