defmodule Thunderbolt do
  @moduledoc """
  Run ONNX models from Elixir through ONNX Runtime, in microseconds.

      {:ok, session} = Thunderbolt.load("model.onnx")
      ids = Thunderbolt.Tensor.new([Enum.to_list(1..40)], type: :s64)
      {:ok, %{"logits" => logits}} = Thunderbolt.run(session, ids)

  A session may be shared by any number of processes. Short runs execute on
  the calling process's scheduler, long ones on a dirty scheduler, so the
  BEAM stays responsive either way (see `run/3`).
  """

  alias Thunderbolt.{Error, Inputs, Native, Session, Tensor}

  @ort_version "1.31.1"
  @load_defaults [
    intra_op_threads: 1,
    inter_op_threads: 1,
    optimization_level: :all,
    execution_providers: [:cpu],
    pool_size: nil,
    max_normal_run_us: 250,
    ort_lib: nil
  ]
  @optimization_levels [:disable, :basic, :extended, :all]
  @most_threads 1024
  @providers [:cpu, :cuda, :tensorrt, :rocm, :openvino, :coreml, :directml, :xnnpack]

  @type source :: Path.t() | {:binary, binary()}
  @type inputs :: Tensor.t() | [Tensor.t()] | %{(String.t() | atom()) => Tensor.t()}

  @doc """
  Loads a model from a file path or from `{:binary, bytes}`.

  ## Options

    * `:intra_op_threads` — threads inside one operator (default `1`; `0`
      lets ONNX Runtime choose). One is right for small models: the BEAM
      already runs many inferences in parallel, and ONNX Runtime's spinning
      worker threads would compete with its schedulers.
    * `:inter_op_threads` — threads across independent operators (default `1`).
      Either count is at most 1024.
    * `:optimization_level` — `:disable`, `:basic`, `:extended` or `:all`
      (default `:all`, ONNX Runtime's `ORT_ENABLE_ALL`).
    * `:execution_providers` — providers in order of preference, for example
      `[:cuda, :cpu]`. A provider this ONNX Runtime build lacks, or one
      that fails to start (its libraries or device missing), is skipped
      with an entry in `session.warnings`, and CPU is always the final
      fallback. Known: #{Enum.map_join(@providers, ", ", &inspect/1)}.
    * `:pool_size` — independent native sessions for this model (default
      `System.schedulers_online()`), so that that many processes can run it
      at the same moment. Each holds its own copy of the weights.
    * `:max_normal_run_us` — runs expected to take longer than this many
      microseconds go to a dirty scheduler (default `250`, at most
      1,000,000).
    * `:ort_lib` — path of the ONNX Runtime shared library. Otherwise
      `THUNDERBOLT_ORT_LIB`, then `config :thunderbolt, :ort_lib`, then
      `priv/onnxruntime/libonnxruntime.so.#{@ort_version}`. The first load in
      the OS process fixes the library for its lifetime.

  ## Examples

      iex> {:error, %Thunderbolt.Error{kind: :load}} = Thunderbolt.load("/no/such/model.onnx")
      iex> {:error, %Thunderbolt.Error{kind: :load}} = Thunderbolt.load({:binary, "not a model"})
  """
  @spec load(source(), keyword()) :: {:ok, Session.t()} | {:error, Error.t()}
  def load(source, opts \\ []) do
    with {:ok, opts} <- validate_load_options(opts),
         {:ok, native_source} <- native_source(source) do
      native_opts = %{
        ort_lib: opts[:ort_lib] || ort_lib(),
        intra_op_threads: nonzero(opts[:intra_op_threads]),
        inter_op_threads: nonzero(opts[:inter_op_threads]),
        optimization_level: opts[:optimization_level],
        execution_providers: opts[:execution_providers],
        pool_size: opts[:pool_size],
        max_normal_run_us: opts[:max_normal_run_us]
      }

      with {:ok, {resource, info}} <-
             native_source |> Native.session_load(native_opts) |> Error.from_native() do
        {:ok, Session.from_native(resource, info, opts)}
      end
    end
  end

  @doc """
  Like `load/2`, but raises `Thunderbolt.Error`.
  """
  @spec load!(source(), keyword()) :: Session.t()
  def load!(source, opts \\ []), do: source |> load(opts) |> Error.unwrap!()

  @doc """
  Runs a session.

  `inputs` is a single tensor (for a model with one input), a list of
  tensors in the model's input order, or a map from input name (string or
  atom) to tensor. A tensor is a `Thunderbolt.Tensor` or, when Nx is loaded,
  an `Nx.Tensor`. The result maps each output name to a `Thunderbolt.Tensor`.

  ## Options

    * `:outputs` — a list of output names to compute; default all.
    * `:scheduler` — `:auto` (default) runs on the caller's normal
      scheduler once this model has been measured to finish within the
      session's `:max_normal_run_us` for inputs of this size, and on a dirty
      CPU scheduler otherwise. `:normal` and `:dirty` force a choice.

  ## Examples

      session = Thunderbolt.load!("cerebros_trained.onnx")
      ids = Thunderbolt.Tensor.new([Enum.to_list(1..40)], type: :s64)
      {:ok, %{"logits" => %Thunderbolt.Tensor{shape: {1, 1000}}}} = Thunderbolt.run(session, ids)
  """
  @spec run(Session.t(), inputs(), keyword()) ::
          {:ok, %{String.t() => Tensor.t()}} | {:error, Error.t()}
  def run(session, inputs, opts \\ [])

  # The commonest call, one tensor for a one-input model with no options,
  # skips the general checks, whose answers are known: about 0.2 µs of a
  # 14 µs batch-1 run.
  def run(%Session{inputs: [_]} = session, %Tensor{} = tensor, []) do
    session |> call_native([tensor], nil, :auto) |> Error.from_native()
  end

  def run(%Session{} = session, inputs, opts) do
    with {:ok, opts} <- validate_run_options(opts),
         {:ok, tensors} <- Inputs.order(session.inputs, inputs),
         {:ok, outputs} <- Inputs.output_indices(session.outputs, opts[:outputs]) do
      session |> call_native(tensors, outputs, opts[:scheduler]) |> Error.from_native()
    end
  end

  @doc """
  Like `run/3`, but raises `Thunderbolt.Error`.
  """
  @spec run!(Session.t(), inputs(), keyword()) :: %{String.t() => Tensor.t()}
  def run!(session, inputs, opts \\ []), do: session |> run(inputs, opts) |> Error.unwrap!()

  @doc """
  The loaded ONNX Runtime library, or `nil` before the first `load/2`.

      iex> match?(%{"version" => _, "path" => _}, Thunderbolt.runtime_info()) or Thunderbolt.runtime_info() == nil
      true
  """
  @spec runtime_info() :: %{String.t() => String.t()} | nil
  def runtime_info, do: Native.runtime_info()

  @doc false
  @spec default_ort_lib() :: String.t()
  def default_ort_lib do
    Path.join([:code.priv_dir(:thunderbolt), "onnxruntime", "libonnxruntime.so.#{@ort_version}"])
  end

  defp ort_lib do
    System.get_env("THUNDERBOLT_ORT_LIB") ||
      Application.get_env(:thunderbolt, :ort_lib) ||
      default_ort_lib()
  end

  defp nonzero(0), do: nil
  defp nonzero(n), do: n

  defp native_source({:binary, bytes}) when is_binary(bytes), do: {:ok, {:binary, bytes}}

  defp native_source(path) when is_binary(path) do
    if String.contains?(path, <<0>>) do
      {:error, Error.new(:load, "a model path cannot contain NUL bytes")}
    else
      {:ok, {:file, path}}
    end
  end

  defp native_source(other) do
    {:error,
     Error.new(
       :invalid_input,
       "expected a model path or {:binary, bytes}, got: #{inspect(other, limit: 5)}"
     )}
  end

  defp validate_load_options(opts) do
    with {:ok, opts} <- validate_keys(opts, @load_defaults) do
      opts = Keyword.update!(opts, :pool_size, &(&1 || System.schedulers_online()))

      cond do
        not thread_count?(opts[:intra_op_threads]) ->
          option_error(":intra_op_threads must be an integer from 0 to #{@most_threads}")

        not thread_count?(opts[:inter_op_threads]) ->
          option_error(":inter_op_threads must be an integer from 0 to #{@most_threads}")

        opts[:optimization_level] not in @optimization_levels ->
          option_error(":optimization_level must be one of #{inspect(@optimization_levels)}")

        not (is_list(opts[:execution_providers]) and
                 Enum.all?(opts[:execution_providers], &(&1 in @providers))) ->
          option_error(":execution_providers must be a list of #{inspect(@providers)}")

        not (is_integer(opts[:pool_size]) and opts[:pool_size] in 1..256) ->
          option_error(":pool_size must be an integer from 1 to 256")

        # Beyond a second a run holds a normal scheduler far too long anyway.
        not (is_integer(opts[:max_normal_run_us]) and opts[:max_normal_run_us] in 0..1_000_000) ->
          option_error(":max_normal_run_us must be an integer from 0 to 1000000")

        not (is_nil(opts[:ort_lib]) or is_binary(opts[:ort_lib])) ->
          option_error(":ort_lib must be a path")

        true ->
          {:ok, opts}
      end
    end
  end

  defp validate_run_options([]), do: {:ok, [outputs: nil, scheduler: :auto]}

  defp validate_run_options(opts) do
    with {:ok, opts} <- validate_keys(opts, outputs: nil, scheduler: :auto) do
      cond do
        opts[:scheduler] not in [:auto, :normal, :dirty] ->
          option_error(":scheduler must be :auto, :normal or :dirty")

        not (is_nil(opts[:outputs]) or is_list(opts[:outputs])) ->
          option_error(":outputs must be a list of output names")

        true ->
          {:ok, opts}
      end
    end
  end

  defp validate_keys(opts, defaults) when is_list(opts) do
    if List.improper?(opts),
      do: option_error("options must be a keyword list"),
      else: validate_known_keys(opts, defaults)
  end

  defp validate_keys(_opts, _defaults), do: option_error("options must be a keyword list")

  defp validate_known_keys(opts, defaults) do
    case Keyword.validate(opts, defaults) do
      {:ok, opts} -> {:ok, opts}
      {:error, unknown} -> option_error("unknown options #{inspect(unknown)}")
    end
  rescue
    ArgumentError -> option_error("options must be a keyword list")
  end

  # ONNX Runtime starts the threads at load; a count in the millions would
  # exhaust the machine rather than fail.
  defp thread_count?(n), do: is_integer(n) and n in 0..@most_threads

  defp option_error(message), do: {:error, Error.new(:invalid_option, message)}

  defp call_native(%Session{resource: ref}, inputs, outputs, :dirty),
    do: Native.session_run_dirty(ref, inputs, outputs)

  # The NIF charges each normal-scheduler run against a short slice so that
  # busy callers yield often; that fairness is only worth its cost when
  # some process is waiting to run (a 12 ns read of the run queue lengths).
  defp call_native(%Session{resource: ref}, inputs, outputs, mode) do
    others_waiting = :erlang.statistics(:total_run_queue_lengths) > 0

    case Native.session_run(ref, inputs, outputs, mode, others_waiting) do
      :dirty -> Native.session_run_dirty(ref, inputs, outputs)
      result -> result
    end
  end
end
