defmodule Thunderbolt.OnnxInference do
  @moduledoc """
  One inference on a model named by path, with JSON-shaped input and a
  JSON-ready result: the `OnnxInference` interface of the application
  Thunderbolt serves, and what an LLM tool call reaches (through
  `Thunderbolt.Ash.OnnxInference` or the MCP server).

      {:ok, result} = Thunderbolt.OnnxInference.infer("cerebros_trained.onnx", %{data: tokens}, %{})
      result.predictions["logits"]["shape"]
      #=> [1, 1000]

  ## Model path

  `model_path` is confined to the model directory (see
  `Thunderbolt.ModelDir`): relative to it, or absolute inside it. Paths that
  leave it, by `..`, by an absolute path or through a symbolic link, are
  refused with `{:error, {:forbidden_path, model_path}}`, because the path
  may come from a language model. It must name an `.onnx` file.

  Sessions come from `Thunderbolt.ModelServer`, so a model is loaded once
  and then served from the cache.

  ## Input

  Atom or string keys, as JSON from a tool call arrives:

    * `%{"data" => [...]}` for a model with one input, with optional
      `"dtype"` (`"int64"`, `"s64"`, `"float32"`, ...) and `"shape"`
      (`[1, 40]`) to reshape flat data;
    * `%{"input_ids" => %{"data" => [...]}, "positions" => %{...}}`, a map
      from input name to such a value (or to a bare list), for models with
      several inputs.

  Values are converted to the type the model declares for the input; the
  given `dtype` is used only when the model declares none. Data with one
  dimension fewer than the model's input, such as a flat list of token ids
  for a `[batch, 40]` input, is one sample: it gets a batch dimension of 1.

  An input with more elements than the limit (`:max_input_elements`,
  default `config :thunderbolt, :max_input_elements` or 1,000,000) is
  refused with `{:error, {:input_too_large, ...}}` before any tensor is
  built; a `"shape"` is checked against it before the data is looked at.

  ## Result

  `{:ok, %Thunderbolt.OnnxInference{}}` with `status: :success`,
  `duration_ms` (the whole call, measured) and `predictions`: a map from
  each output name to `%{"tensor" => nested lists, "shape" => [..],
  "dtype" => "f32"}`, plus `"top_k"` when asked: one list per sample of
  `%{"index", "label", "score"}` maps, best first. Labels come from
  `metadata["class_names"]` when given, else they are the indices. All of
  it is plain maps, lists, strings and numbers, ready for `:jiffy.encode/1`;
  a non-finite float appears as the string `"nan"`, `"infinity"` or
  `"neg_infinity"`.

  Failures are `{:error, reason}` (the original returned a struct with
  `status: :error`); `format_error/1` turns a reason into a sentence.

  ## Going through a serving

  With a `:serving` option, or `config :thunderbolt, :onnx_inference_servings`
  mapping a model path (as the caller gives it, or resolved) to a serving
  name, the run goes through `Thunderbolt.Serving.run(name, inputs, opts)`
  instead of `Thunderbolt.run/3`, so that concurrent calls can be batched.
  The session is still resolved and loaded here, to know the model's inputs.
  """

  alias Thunderbolt.{Error, Inputs, ModelDir, ModelServer, Native, Session, Tensor}

  @compile {:no_warn_undefined, Thunderbolt.Serving}

  @enforce_keys [:model_path, :predictions]
  defstruct [:model_path, :input, :metadata, :predictions, :duration_ms, status: :success]

  @type t :: %__MODULE__{
          model_path: String.t(),
          input: map(),
          metadata: map(),
          predictions: %{String.t() => map()},
          duration_ms: float(),
          status: :success
        }

  @type reason ::
          {:forbidden_path, String.t()}
          | {:file_not_found, String.t()}
          | {:invalid_extension, String.t()}
          | {:invalid_input, String.t()}
          | {:invalid_option, String.t()}
          | {:input_too_large, %{elements: pos_integer(), limit: pos_integer()}}
          | {:load_failed, Error.t() | term()}
          | {:inference_failed, Error.t() | term()}

  @default_max_input_elements 1_000_000
  @most_top_k 0xFFFF_FFFF
  @most_input_elements 0x7FFF_FFFF_FFFF_FFFF
  @option_keys [
    :top_k,
    :model_dir,
    :load_options,
    :outputs,
    :max_input_elements,
    :serving,
    :model_server
  ]
  @dtype_names %{
    "float16" => :f16,
    "float32" => :f32,
    "float64" => :f64,
    "float" => :f32,
    "double" => :f64,
    "bfloat16" => :bf16,
    "int8" => :s8,
    "int16" => :s16,
    "int32" => :s32,
    "int64" => :s64,
    "uint8" => :u8,
    "uint16" => :u16,
    "uint32" => :u32,
    "uint64" => :u64,
    "bool" => :bool
  }

  @doc """
  Runs the model at `model_path` on `input`. `metadata` is returned as it
  is and may carry `"top_k"` and `"class_names"` (atom or string keys).

  ## Options

    * `:top_k` — add the `k` best classes of each output (overrides
      `metadata["top_k"]`).
    * `:outputs` — compute only these outputs (default all).
    * `:model_dir` — the directory to confine `model_path` to (default
      `Thunderbolt.ModelDir.dir/0`).
    * `:max_input_elements` — the input size limit (see the module doc).
    * `:load_options` — `Thunderbolt.load/2` options for a first load
      (default `[]`); each set is cached separately.
    * `:serving` — run through this `Thunderbolt.Serving` (see the module doc).
    * `:model_server` — the `Thunderbolt.ModelServer` to use (default
      `Thunderbolt.ModelServer`).

  ## Examples

      iex> Thunderbolt.OnnxInference.infer("../../etc/passwd", %{"data" => [1]}, %{})
      {:error, {:forbidden_path, "../../etc/passwd"}}
  """
  @spec infer(term(), term(), term(), keyword()) :: {:ok, t()} | {:error, reason()}
  def infer(model_path, input, metadata, opts \\ []) do
    start = System.monotonic_time()

    with {:ok, opts} <- validate_options(opts),
         :ok <- check_metadata(metadata),
         {:ok, path, session} <- session(model_path, opts),
         {:ok, limit} <- max_elements(opts),
         {:ok, args} <- tensors(session, input, limit),
         {:ok, predictions} <- run(session, args, limit, {model_path, path}, opts, metadata) do
      {:ok,
       %__MODULE__{
         model_path: model_path,
         input: input,
         metadata: metadata,
         predictions: predictions,
         duration_ms: elapsed_ms(start),
         status: :success
       }}
    end
  end

  @doc """
  The result as a plain, string-keyed map that any JSON encoder takes:
  `"model_path"`, `"input"`, `"metadata"`, `"predictions"`, `"duration_ms"`
  and `"status" => "success"`. Atom keys in `input` and `metadata` become
  strings.

      iex> result = %Thunderbolt.OnnxInference{model_path: "m.onnx", input: %{data: [1]}, metadata: %{}, predictions: %{}, duration_ms: 0.05}
      iex> Thunderbolt.OnnxInference.to_map(result)
      %{"model_path" => "m.onnx", "input" => %{"data" => [1]}, "metadata" => %{}, "predictions" => %{}, "duration_ms" => 0.05, "status" => "success"}
  """
  @spec to_map(t()) :: map()
  def to_map(%__MODULE__{} = result) do
    %{
      "model_path" => result.model_path,
      "input" => json_ready(result.input),
      "metadata" => json_ready(result.metadata),
      "predictions" => result.predictions,
      "duration_ms" => result.duration_ms,
      "status" => Atom.to_string(result.status)
    }
  end

  @doc """
  A sentence for an error reason, for a person or a language model.

      iex> Thunderbolt.OnnxInference.format_error({:forbidden_path, "../x.onnx"})
      "model path \\"../x.onnx\\" is outside the model directory"
      iex> Thunderbolt.OnnxInference.format_error({:input_too_large, %{elements: 2_000_000, limit: 1_000_000}})
      "the input has 2000000 elements, more than the limit of 1000000"
  """
  @spec format_error(term()) :: String.t()
  def format_error({:forbidden_path, path}),
    do: "model path #{inspect(path)} is outside the model directory"

  def format_error({:file_not_found, path}), do: "no model file at #{inspect(path)}"

  def format_error({:invalid_extension, path}),
    do: "model path #{inspect(path)} does not name an .onnx file"

  def format_error({:invalid_input, message}), do: "invalid input: #{message}"
  def format_error({:invalid_option, message}), do: "invalid option: #{message}"

  def format_error({:input_too_large, %{elements: n, limit: limit}}),
    do: "the input has #{n} elements, more than the limit of #{limit}"

  def format_error({:load_failed, %Error{message: m}}), do: "the model could not be loaded: #{m}"
  def format_error({:inference_failed, %Error{message: m}}), do: "inference failed: #{m}"
  def format_error({:inference_failed, reason}), do: "inference failed: #{inspect(reason)}"
  def format_error({tag, %Error{message: m}}), do: "#{tag}: #{m}"
  def format_error(%Error{message: m}), do: m
  def format_error(other), do: inspect(other)

  # Options

  # One pass over the options, checking each value as it comes, into a map
  # of the given ones (the first of a repeated key wins, as with
  # `Keyword.get/2`); anything else (an unknown option, not a keyword list)
  # is sorted out by `option_error/1`.
  defp validate_options(opts), do: check_options(opts, opts, %{})

  defp check_options([], _opts, options), do: {:ok, options}

  defp check_options([{:top_k, k} | rest], opts, options)
       when is_nil(k) or (is_integer(k) and k > 0),
       do: check_options(rest, opts, Map.put_new(options, :top_k, k))

  defp check_options([{:top_k, _} | _], _opts, _options),
    do: {:error, {:invalid_option, ":top_k must be a positive integer"}}

  defp check_options([{:max_input_elements, n} | rest], opts, options)
       when is_nil(n) or (is_integer(n) and n > 0),
       do: check_options(rest, opts, Map.put_new(options, :max_input_elements, n))

  defp check_options([{:max_input_elements, _} | _], _opts, _options),
    do: {:error, {:invalid_option, ":max_input_elements must be a positive integer"}}

  defp check_options([{:model_dir, dir} | rest], opts, options)
       when is_nil(dir) or is_binary(dir),
       do: check_options(rest, opts, Map.put_new(options, :model_dir, dir))

  defp check_options([{:model_dir, _} | _], _opts, _options),
    do: {:error, {:invalid_option, ":model_dir must be a path"}}

  defp check_options([{:load_options, load_opts} | rest], opts, options) do
    if is_nil(load_opts) or (is_list(load_opts) and Keyword.keyword?(load_opts)),
      do: check_options(rest, opts, Map.put_new(options, :load_options, load_opts)),
      else: {:error, {:invalid_option, ":load_options must be a keyword list"}}
  end

  defp check_options([{key, value} | rest], opts, options) when key in @option_keys,
    do: check_options(rest, opts, Map.put_new(options, key, value))

  defp check_options(_rest, opts, _options), do: option_error(opts)

  defp option_error(opts) do
    with true <- is_list(opts) and Keyword.keyword?(opts),
         [_ | _] = unknown <- Enum.uniq(Keyword.keys(opts)) -- @option_keys do
      {:error, {:invalid_option, "unknown options #{inspect(unknown)}"}}
    else
      _ -> {:error, {:invalid_option, "options must be a keyword list"}}
    end
  end

  defp check_metadata(metadata) when is_map(metadata), do: :ok

  defp check_metadata(other),
    do: {:error, {:invalid_input, "metadata must be a map, got: #{inspect(other, limit: 5)}"}}

  # Path.extname/1's answer for a resolved file path, at a sixth of its
  # cost (0.1 against 0.6 µs): a name ending in ".onnx", other than the
  # dotfile ".onnx" itself.
  defp check_extension(path, model_path) do
    if String.ends_with?(path, ".onnx") and not String.ends_with?(path, "/.onnx") and
         path != ".onnx",
       do: :ok,
       else: {:error, {:invalid_extension, model_path}}
  end

  # A limit above a machine word is no limit (and the NIF takes a word).
  defp max_elements(opts) do
    case Map.get(opts, :max_input_elements) ||
           Application.get_env(:thunderbolt, :max_input_elements, @default_max_input_elements) do
      limit when is_integer(limit) and limit > 0 ->
        {:ok, min(limit, @most_input_elements)}

      other ->
        {:error,
         {:invalid_option,
          "config :thunderbolt, :max_input_elements must be a positive integer, got: #{inspect(other)}"}}
    end
  end

  # Any positive integer, from options or from a tool call's metadata; the
  # NIF takes a machine word, and no output row has 2^32 elements.
  defp top_k(opts, metadata) do
    case Map.get(opts, :top_k) || Map.get(metadata, "top_k") || Map.get(metadata, :top_k) do
      k when is_integer(k) and k > 0 -> min(k, @most_top_k)
      _ -> nil
    end
  end

  # Session and run

  # The model, confined to the directory, as an .onnx file, from the cache.
  defp session(model_path, opts) do
    dir = Map.get(opts, :model_dir) || ModelDir.dir()
    load_opts = Map.get(opts, :load_options) || []
    server = Map.get(opts, :model_server) || ModelServer
    check = &check_extension(&1, model_path)

    case ModelServer.fetch_named(model_path, dir, load_opts, check, server) do
      {:ok, _path, _session} = ok -> ok
      {:error, {tag, _}} = error when tag in [:forbidden_path, :file_not_found] -> error
      {:error, {:invalid_extension, _}} = error -> error
      {:error, reason} -> {:error, {:load_failed, reason}}
    end
  end

  # `args` holds, in the model's input order, a tensor or {data, type,
  # declared_rank, label} for the NIF to encode (see `tensor/4`) for each
  # input.
  defp run(session, args, limit, {model_path, path}, opts, metadata) do
    top_k = top_k(opts, metadata)

    result =
      case serving(opts, model_path, path) do
        nil ->
          infer_native(session, args, limit, Map.get(opts, :outputs), top_k)

        name ->
          outputs = Map.get(opts, :outputs)
          run_opts = if outputs, do: [outputs: outputs], else: []

          with {:ok, tensors} <- to_tensors(args, session),
               {:ok, outputs} <- run_serving(name, tensors, run_opts) do
            {:ok, outputs, false}
          end
      end

    case result do
      {:ok, predictions, true} ->
        {:ok, predictions}

      {:error, {:input_too_large, _}} = error ->
        error

      {:ok, predictions, false} ->
        {:ok, finish_predictions(predictions, top_k, metadata)}

      {:error, {:invalid_input, _} = reason} ->
        {:error, reason}

      {:error, %Error{kind: kind, message: m}} when kind in [:invalid_input, :invalid_option] ->
        {:error, {:invalid_input, m}}

      {:error, reason} ->
        {:error, {:inference_failed, reason}}
    end
  end

  # One NIF call makes the inputs, runs on the normal scheduler when the
  # run is known to be short (as `Thunderbolt.run/3` does) and answers the
  # JSON-ready predictions.
  defp infer_native(session, args, limit, outputs, top_k) do
    with {:ok, indices} <- Inputs.output_indices(session.outputs, outputs) do
      case call_infer(session, args, limit, indices, top_k) do
        {:ok, _predictions, _finished} = result -> result
        :too_large -> too_large(session, args, limit, indices, top_k)
        error -> Error.from_native(error)
      end
    end
  end

  defp call_infer(%Session{resource: ref}, ordered, limit, indices, top_k) do
    others_waiting = :erlang.statistics(:total_run_queue_lengths) > 0

    case Native.session_infer(ref, ordered, limit, indices, top_k, others_waiting) do
      :dirty -> Native.session_infer_dirty(ref, ordered, limit, indices, top_k)
      result -> result
    end
  end

  # The NIF bounds the size by the lengths along the first element of each
  # level; the exact count, for the message, is made here. Ragged lists may
  # pass that bound yet hold fewer elements: the NIF then says so itself.
  defp too_large(session, ordered, limit, indices, top_k) do
    elements =
      Enum.sum(for {data, _type, _rank, _label} <- ordered, do: elements(%{"data" => data}))

    if elements > limit do
      {:error, {:input_too_large, %{elements: elements, limit: limit}}}
    else
      session |> call_infer(ordered, nil, indices, top_k) |> Error.from_native()
    end
  end

  defp to_tensors(args, session) do
    Enum.zip(session.inputs, args)
    |> Enum.reduce_while({:ok, %{}}, fn {spec, arg}, {:ok, acc} ->
      case to_tensor(arg, spec) do
        {:ok, tensor} -> {:cont, {:ok, Map.put(acc, spec.name, tensor)}}
        error -> {:halt, error}
      end
    end)
  end

  defp to_tensor(%Tensor{} = tensor, _spec), do: {:ok, tensor}

  defp to_tensor({data, type, _rank, label}, spec) do
    {:ok, data |> Tensor.new(type: Tensor.from_type_atom(type)) |> add_batch_axis(spec)}
  rescue
    e in ArgumentError -> {:error, {:invalid_input, labelled(label, Exception.message(e))}}
  end

  defp labelled(nil, message), do: message
  defp labelled(label, message), do: "#{label}: #{message}"

  defp serving(opts, model_path, path) do
    case Map.fetch(opts, :serving) do
      {:ok, name} ->
        name

      :error ->
        servings = Application.get_env(:thunderbolt, :onnx_inference_servings, %{})
        Map.get(servings, model_path) || Map.get(servings, path)
    end
  end

  # The seam for Thunderbolt.Serving (dynamic batching), which is expected
  # to answer like Thunderbolt.run/3.
  defp run_serving(name, tensors, run_opts) do
    if Code.ensure_loaded?(Thunderbolt.Serving) do
      Thunderbolt.Serving.run(name, tensors, run_opts)
    else
      {:error, Error.new(:unsupported, "Thunderbolt.Serving is not available")}
    end
  end

  # Input

  defp tensors(%Session{inputs: specs}, input, limit) when is_map(input) do
    with {:ok, input} <- string_keys(input) do
      if Map.has_key?(input, "data") do
        case specs do
          [spec] ->
            with {:ok, arg} <- tensor(spec, input, limit, nil), do: {:ok, [arg]}

          _ ->
            {:error,
             {:invalid_input,
              "the model has #{length(specs)} inputs (#{names(specs)}); give a map from input name to %{\"data\" => ...}"}}
        end
      else
        named_tensors(specs, input, limit)
      end
    end
  end

  defp tensors(_session, other, _limit) do
    {:error,
     {:invalid_input,
      "input must be a map such as %{\"data\" => [...]}, got: #{inspect(other, limit: 5)}"}}
  end

  defp named_tensors(specs, input, limit) do
    known = MapSet.new(specs, & &1.name)

    cond do
      (unknown = Enum.reject(Map.keys(input), &MapSet.member?(known, &1))) != [] ->
        {:error,
         {:invalid_input,
          "unknown input(s) #{Enum.map_join(unknown, ", ", &inspect/1)}; the model's inputs are #{names(specs)}" <>
            if(length(specs) == 1, do: ", or give %{\"data\" => [...]}", else: "")}}

      (missing = Enum.reject(specs, &Map.has_key?(input, &1.name))) != [] ->
        {:error, {:invalid_input, "missing input(s) #{names(missing)}"}}

      true ->
        # Count everything before building anything.
        with :ok <- check_total(specs, input, limit) do
          specs
          |> Enum.reduce_while({:ok, []}, fn spec, {:ok, acc} ->
            value = Map.fetch!(input, spec.name)

            case tensor(spec, as_value(value), limit, spec.name) do
              {:ok, arg} ->
                {:cont, {:ok, [arg | acc]}}

              {:error, {:invalid_input, m}} ->
                {:halt, {:error, {:invalid_input, "#{spec.name}: #{m}"}}}

              error ->
                {:halt, error}
            end
          end)
          |> case do
            {:ok, args} -> {:ok, Enum.reverse(args)}
            error -> error
          end
        end
    end
  end

  defp as_value(list) when is_list(list), do: %{"data" => list}

  defp as_value(map) when is_map(map) do
    case string_keys(map) do
      {:ok, map} -> map
      _ -> map
    end
  end

  defp as_value(other), do: %{"data" => other}

  defp check_total(specs, input, limit) do
    Enum.reduce_while(specs, {:ok, 0}, fn spec, {:ok, total} ->
      case count(as_value(Map.fetch!(input, spec.name)), limit - total) do
        {:ok, n} -> {:cont, {:ok, total + n}}
        :too_many -> {:halt, :too_many}
      end
    end)
    |> case do
      {:ok, _} ->
        :ok

      :too_many ->
        {:error, {:input_too_large, %{elements: total_count(specs, input), limit: limit}}}
    end
  end

  defp total_count(specs, input) do
    Enum.sum(for spec <- specs, do: elements(as_value(Map.fetch!(input, spec.name))))
  end

  # One input value, %{"data" => ..., "dtype" => ..., "shape" => ...}, as a
  # tensor, or, for nested data of a known type, as {data, type,
  # declared_rank, label} for the NIF to encode with no tensor made in
  # between (`label` names the input in its errors).
  defp tensor(spec, %{} = value, limit, label) do
    with :ok <- known_keys(value),
         {:ok, data} <- fetch_data(value),
         {:ok, shape} <- requested_shape(value["shape"], limit),
         {:ok, type} <- element_type(spec, value["dtype"]) do
      if shape == nil and type != nil do
        # The NIF checks the size against the limit before it allocates.
        {:ok, {data, Tensor.type_atom(type), tuple_size(spec.shape), label}}
      else
        with {:ok, n} <- count_within(value, limit), do: build(spec, data, shape, type, n)
      end
    end
  end

  defp known_keys(%{"data" => _} = value) when map_size(value) == 1, do: :ok

  defp known_keys(value) do
    case Map.keys(value) -- ["data", "dtype", "shape"] do
      [] ->
        :ok

      unknown ->
        {:error,
         {:invalid_input,
          "unknown key(s) #{Enum.map_join(unknown, ", ", &inspect/1)}; an input is %{\"data\" => [...], \"dtype\" => ..., \"shape\" => [...]}"}}
    end
  end

  defp fetch_data(%{"data" => data}) when is_list(data) or is_number(data), do: {:ok, data}

  defp fetch_data(%{"data" => other}),
    do:
      {:error,
       {:invalid_input,
        "\"data\" must be a number or a (nested) list of numbers, got: #{inspect(other, limit: 5)}"}}

  defp fetch_data(_), do: {:error, {:invalid_input, "missing \"data\""}}

  defp requested_shape(nil, _limit), do: {:ok, nil}

  defp requested_shape(shape, limit) when is_list(shape) do
    cond do
      List.improper?(shape) or not Enum.all?(shape, &(is_integer(&1) and &1 >= 0)) ->
        {:error,
         {:invalid_input,
          "\"shape\" must be a list of non-negative integers, got: #{inspect(shape, limit: 10)}"}}

      (n = Enum.product(shape)) > limit ->
        {:error, {:input_too_large, %{elements: n, limit: limit}}}

      true ->
        {:ok, List.to_tuple(shape)}
    end
  end

  defp requested_shape(other, _limit),
    do:
      {:error,
       {:invalid_input, "\"shape\" must be a list of integers, got: #{inspect(other, limit: 5)}"}}

  defp count_within(value, limit) do
    case count(value, limit) do
      {:ok, n} -> {:ok, n}
      :too_many -> {:error, {:input_too_large, %{elements: elements(value), limit: limit}}}
    end
  end

  # Leaves of the nested data, giving up as soon as there are more than
  # `budget`: a huge input is refused after looking at `budget` elements.
  defp count(%{"data" => data}, budget), do: count_leaves(data, 0, budget)
  defp count(_value, _budget), do: {:ok, 0}

  # (An integer is always less than the atom :infinity.)
  defp count_leaves(_data, n, budget) when n > budget, do: :too_many
  defp count_leaves([], n, _budget), do: {:ok, n}

  defp count_leaves([head | tail], n, budget) do
    case count_leaves(head, n, budget) do
      {:ok, n} -> count_leaves(tail, n, budget)
      :too_many -> :too_many
    end
  end

  defp count_leaves(_leaf, n, budget) when n >= budget, do: :too_many
  defp count_leaves(_leaf, n, _budget), do: {:ok, n + 1}

  # Counts without building anything, for the error message.
  defp elements(value) do
    {:ok, n} = count(value, :infinity)
    n
  end

  # The model's declared type wins; a given dtype must still be a known name.
  defp element_type(spec, dtype) do
    with {:ok, given} <- parse_dtype(dtype) do
      {:ok, spec.type || given}
    end
  end

  defp parse_dtype(nil), do: {:ok, nil}

  defp parse_dtype(dtype) do
    name =
      case dtype do
        name when is_binary(name) ->
          Map.get_lazy(@dtype_names, name, fn -> existing_atom(name) end)

        other ->
          other
      end

    case Tensor.type(name) do
      {:ok, type} -> {:ok, type}
      {:error, _} -> {:error, {:invalid_input, "unknown dtype #{inspect(dtype)}"}}
    end
  end

  defp existing_atom(name) do
    String.to_existing_atom(name)
  rescue
    ArgumentError -> name
  end

  defp build(spec, data, shape, type, n) do
    tensor =
      case shape do
        nil ->
          Tensor.new(data, type: type)

        shape ->
          if Tensor.element_count(shape) != n do
            throw(
              {:invalid_input,
               "\"shape\" #{inspect(Tuple.to_list(shape))} needs #{Tensor.element_count(shape)} elements, \"data\" has #{n}"}
            )
          end

          data |> List.wrap() |> List.flatten() |> Tensor.new(type: type) |> Tensor.reshape(shape)
      end

    {:ok, add_batch_axis(tensor, spec)}
  rescue
    e in ArgumentError -> {:error, {:invalid_input, Exception.message(e)}}
  catch
    {:invalid_input, _} = reason -> {:error, reason}
  end

  # A flat list of token ids for a [batch, 40] input is one sample.
  defp add_batch_axis(%Tensor{shape: shape} = tensor, %{shape: declared})
       when tuple_size(declared) > 0 and tuple_size(shape) == tuple_size(declared) - 1 do
    %{tensor | shape: Tuple.insert_at(shape, 0, 1)}
  end

  defp add_batch_axis(tensor, _spec), do: tensor

  # Predictions

  # The NIF lists outputs itself, but leaves rankings as rows of
  # {index, score} to label here, and an output too big to list on the
  # normal scheduler as a tensor; a serving answers tensors.
  defp finish_predictions(predictions, top_k, metadata) do
    names = class_names(metadata)

    Map.new(predictions, fn
      {name, %Tensor{} = tensor} -> {name, finish_prediction(listed(tensor, top_k), names)}
      {name, prediction} -> {name, finish_prediction(prediction, names)}
    end)
  end

  defp listed(tensor, top_k) do
    prediction = %{
      "tensor" => Tensor.to_list(tensor, non_finite: :strings),
      "shape" => Tuple.to_list(tensor.shape),
      "dtype" => Tensor.type_string(tensor.type)
    }

    if top_k, do: Map.put(prediction, "top_k", Tensor.top_k(tensor, top_k)), else: prediction
  end

  defp finish_prediction(%{"top_k" => rows} = prediction, names),
    do: %{prediction | "top_k" => ranked(rows, names)}

  defp finish_prediction(prediction, _names), do: prediction

  # One ranking per sample: the leading axis is the batch, the rest is
  # flattened into the scores of one sample.
  defp ranked(rows, names) do
    for row <- rows do
      for {index, score} <- row do
        %{
          "index" => index,
          "label" => json_ready(label(names, index)),
          "score" => json_ready(score)
        }
      end
    end
  end

  defp label(names, index) do
    case Enum.at(names, index) do
      nil -> index
      name -> name
    end
  end

  defp class_names(metadata) do
    # Anything but a proper list labels nothing: the indices stand.
    case Map.get(metadata, "class_names") || Map.get(metadata, :class_names) do
      names when is_list(names) -> if List.improper?(names), do: [], else: names
      _ -> []
    end
  end

  # Plain JSON values: string keys, and non-finite floats as strings.
  defp json_ready(map) when is_map(map) and not is_struct(map),
    do: Map.new(map, fn {k, v} -> {json_key(k), json_ready(v)} end)

  defp json_ready(list) when is_list(list), do: Enum.map(list, &json_ready/1)
  defp json_ready(atom) when atom in [:nan, :infinity, :neg_infinity], do: Atom.to_string(atom)
  defp json_ready(other), do: other

  defp json_key(k) when is_atom(k), do: Atom.to_string(k)
  defp json_key(k), do: k

  # Shared

  # JSON's and Elixir's usual one-input shapes, without a new map built
  # key by key.
  defp string_keys(%{"data" => _} = map) when map_size(map) == 1, do: {:ok, map}
  defp string_keys(%{data: data} = map) when map_size(map) == 1, do: {:ok, %{"data" => data}}

  defp string_keys(map) do
    case Thunderbolt.Inputs.string_keys(map) do
      {:ok, map} ->
        {:ok, map}

      {:error, {:not_a_name, key}} ->
        {:error, {:invalid_input, "keys must be strings or atoms, got #{inspect(key)}"}}

      {:error, {:given_twice, name}} ->
        {:error, {:invalid_input, "#{inspect(name)} is given twice"}}
    end
  end

  defp names(specs), do: Enum.map_join(specs, ", ", &inspect(&1.name))

  defp elapsed_ms(start) do
    System.convert_time_unit(System.monotonic_time() - start, :native, :nanosecond) / 1.0e6
  end
end
