defmodule Thunderbolt.MCP.Tools do
  @moduledoc """
  The tools the MCP server offers, their JSON Schemas, and how a call
  becomes a `CallToolResult`.

    * `onnx_infer` — runs a model on one input through
      `Thunderbolt.OnnxInference.infer/4`
    * `list_models` — the models in the model directory, with signatures
    * `model_info` — one model's inputs, outputs, opset, producer and
      parameter count

  A successful call returns its data twice, as the spec recommends: as
  `structuredContent` (which conforms to the tool's `outputSchema`) and as
  its JSON text in a `text` content block, for clients that predate
  structured content. Protocol revisions before `2025-06-18` have no
  structured content, so for them only the text is sent and tools carry no
  `outputSchema` or `title`.

  A failed call (a bad argument, a missing model, a path outside the model
  directory, an input the model rejects) is a result with `isError: true`
  and a message that says what to change, so that a language model can
  correct itself.

      iex> Thunderbolt.MCP.Tools.names()
      ["onnx_infer", "list_models", "model_info"]
      iex> {:ok, result} = Thunderbolt.MCP.Tools.call("onnx_infer", %{"input" => %{}}, model_dir: "/tmp", version: "2025-11-25")
      iex> {result["isError"], hd(result["content"])["text"]}
      {true, ~s(Invalid arguments: "model" is required, a string such as "model.onnx")}
  """

  require Logger

  alias Thunderbolt.MCP.{JSONRPC, ModelCatalog}

  @structured_since "2025-06-18"
  @max_top_k 1000

  @model_property %{
    "type" => "string",
    "minLength" => 1,
    "description" =>
      "Path of an .onnx file relative to the model directory, exactly as list_models " <>
        ~s(reports it, for example "cerebros_trained.onnx". Absolute paths outside the ) <>
        "directory and '..' are refused."
  }

  @value_info_schema %{
    "type" => "object",
    "properties" => %{
      "name" => %{"type" => "string"},
      "dtype" => %{"type" => ["string", "null"]},
      "shape" => %{"type" => "array", "items" => %{"type" => ["integer", "null"]}}
    },
    "required" => ["name", "dtype", "shape"]
  }

  @prediction_schema %{
    "type" => "object",
    "properties" => %{
      "tensor" => %{"description" => "The values, nested by shape; a number for a scalar."},
      "shape" => %{"type" => "array", "items" => %{"type" => "integer"}},
      "dtype" => %{"type" => "string"},
      "top_k" => %{
        "type" => "array",
        "description" => "Per sample, the k largest values, best first.",
        "items" => %{
          "type" => "array",
          "items" => %{
            "type" => "object",
            "properties" => %{
              "index" => %{"type" => "integer"},
              "label" => %{},
              "score" => %{}
            },
            "required" => ["index", "label", "score"]
          }
        }
      }
    },
    "required" => ["tensor", "shape", "dtype"]
  }

  @doc """
  The names of the tools, in the order `tools/list` gives them.
  """
  @spec names() :: [String.t()]
  def names, do: ["onnx_infer", "list_models", "model_info"]

  @doc """
  The `instructions` the server gives in its `initialize` result: how an
  agent should use the tools together.
  """
  @spec instructions() :: String.t()
  def instructions do
    "Runs ONNX models from a fixed model directory. Call list_models to see the models and " <>
      "their input and output signatures, model_info for one model's details, and onnx_infer " <>
      "to run a model on your input. Model names are paths relative to the model directory."
  end

  @doc """
  The tool definitions for `tools/list` under protocol `version`.
  """
  @spec list(String.t() | nil) :: [map()]
  def list(version) do
    structured? = structured?(version)

    Enum.map(definitions(), fn tool ->
      if structured?, do: tool, else: Map.drop(tool, ["title", "outputSchema"])
    end)
  end

  @doc """
  Calls tool `name` with `arguments` (a decoded JSON object).

  Returns `{:ok, call_tool_result}` (a failure of the tool is a result with
  `"isError" => true`), or `{:error, :unknown_tool}` for a name that is not
  a tool, which the protocol answers with -32602.

  ## Options

    * `:model_dir` — the model directory (required).
    * `:version` — the negotiated protocol version; decides whether the
      result carries `structuredContent`.
  """
  @spec call(String.t(), map(), keyword()) :: {:ok, map()} | {:error, :unknown_tool}
  def call(name, arguments, opts) when is_binary(name) and is_map(arguments) do
    if name in names() do
      dir = Keyword.fetch!(opts, :model_dir)
      {:ok, name |> run_guarded(arguments, dir) |> to_result(structured?(opts[:version]))}
    else
      {:error, :unknown_tool}
    end
  end

  @doc """
  A message for a language model that says what went wrong with `model`.

      iex> Thunderbolt.MCP.Tools.describe_error({:file_not_found, "/srv/models/x.onnx"}, "x.onnx")
      ~s(Model not found: "x.onnx". Call list_models to see the available models.)
      iex> Thunderbolt.MCP.Tools.describe_error({:invalid_input, "missing \\"data\\""}, "x.onnx")
      ~s(invalid input: missing "data")

  Path errors name the model as the caller gave it, never the resolved path;
  other reasons are worded by `Thunderbolt.OnnxInference.format_error/1`.
  """
  @spec describe_error(term(), String.t()) :: String.t()
  def describe_error({:forbidden_path, _}, model) do
    "Forbidden model path: #{inspect(model)}. Models must be named by their path relative " <>
      "to the model directory, without '..', as list_models reports them."
  end

  def describe_error({:file_not_found, _}, model) do
    "Model not found: #{inspect(model)}. Call list_models to see the available models."
  end

  def describe_error(reason, _model), do: Thunderbolt.OnnxInference.format_error(reason)

  # Any failure inside a tool, including a crash, becomes an isError result.
  defp run_guarded(name, arguments, dir) do
    run(name, arguments, dir)
  catch
    kind, reason ->
      Logger.error("tool #{name} crashed: " <> Exception.format(kind, reason, __STACKTRACE__))
      {:error, "Internal error in #{name}: #{Exception.format_banner(kind, reason)}"}
  end

  defp run("onnx_infer", arguments, dir) do
    with :ok <- known_arguments(arguments, ["model", "input", "top_k"]),
         {:ok, model} <- model_argument(arguments),
         {:ok, input} <- input_argument(arguments),
         {:ok, top_k} <- top_k_argument(arguments) do
      opts = [model_dir: dir] ++ if(top_k, do: [top_k: top_k], else: [])

      case Thunderbolt.OnnxInference.infer(model, input, %{}, opts) do
        {:ok, inference} ->
          {:ok,
           %{
             "model" => model,
             "predictions" => inference.predictions,
             "duration_ms" => inference.duration_ms
           }}

        {:error, reason} ->
          {:error, describe_error(reason, model)}
      end
    end
  end

  defp run("list_models", arguments, dir) do
    with :ok <- known_arguments(arguments, []), do: {:ok, ModelCatalog.list(dir)}
  end

  defp run("model_info", arguments, dir) do
    with :ok <- known_arguments(arguments, ["model"]),
         {:ok, model} <- model_argument(arguments) do
      case ModelCatalog.info(model, dir) do
        {:ok, info} -> {:ok, info}
        {:error, reason} -> {:error, describe_error(reason, model)}
      end
    end
  end

  defp known_arguments(arguments, allowed) do
    case Map.keys(arguments) -- allowed do
      [] ->
        :ok

      unknown ->
        expected = if allowed == [], do: "none", else: Enum.join(allowed, ", ")

        {:error,
         "Invalid arguments: unknown #{Enum.map_join(unknown, ", ", &inspect/1)}; " <>
           "this tool takes: #{expected}"}
    end
  end

  defp model_argument(%{"model" => model}) when is_binary(model) and model != "",
    do: {:ok, model}

  defp model_argument(%{"model" => other}) do
    {:error,
     ~s(Invalid arguments: "model" must be a non-empty string such as "model.onnx", got ) <>
       JSONRPC.json_type(other)}
  end

  defp model_argument(_arguments),
    do: {:error, ~s(Invalid arguments: "model" is required, a string such as "model.onnx")}

  defp input_argument(%{"input" => input}) when is_map(input) and map_size(input) > 0,
    do: {:ok, input}

  defp input_argument(%{"input" => other}) do
    {:error,
     ~s(Invalid arguments: "input" must be a non-empty object, {"data": [...]} or ) <>
       ~s({"<input name>": {"data": [...]}, ...}, got ) <> describe_value(other)}
  end

  defp input_argument(_arguments),
    do: {:error, ~s(Invalid arguments: "input" is required, for example {"data": [[1, 2, 3]]})}

  defp top_k_argument(%{"top_k" => k}) when is_integer(k) and k >= 1 and k <= @max_top_k,
    do: {:ok, k}

  defp top_k_argument(%{"top_k" => nil}), do: {:ok, nil}

  defp top_k_argument(%{"top_k" => other}) do
    {:error,
     ~s(Invalid arguments: "top_k" must be an integer from 1 to #{@max_top_k}, got ) <>
       describe_value(other)}
  end

  defp top_k_argument(_arguments), do: {:ok, nil}

  defp describe_value(value) when is_map(value) and map_size(value) == 0, do: "an empty object"
  defp describe_value(value) when is_integer(value), do: Integer.to_string(value)
  defp describe_value(value), do: JSONRPC.json_type(value)

  defp to_result({:ok, data}, structured?) do
    content = [%{"type" => "text", "text" => JSONRPC.encode(data)}]
    result = %{"content" => content, "isError" => false}
    if structured?, do: Map.put(result, "structuredContent", data), else: result
  end

  defp to_result({:error, message}, _structured?) do
    %{"content" => [%{"type" => "text", "text" => message}], "isError" => true}
  end

  defp structured?(version), do: is_binary(version) and version >= @structured_since

  defp definitions do
    [
      %{
        "name" => "onnx_infer",
        "title" => "Run an ONNX model",
        "description" =>
          "Runs an ONNX model from the model directory on your input and returns every output " <>
            "tensor. Call list_models or model_info first to learn the model's input names, " <>
            "dtypes and shapes. For a model with one input pass " <>
            ~s({"data": [[...]]}; for several inputs pass an object keyed by input name, ) <>
            ~s(each {"data": ...}. "data" is a nested list of numbers; a flat list is one ) <>
            ~s|sample. Optional "dtype" (such as "s64" or "f32") and "shape" override the | <>
            "model's. Set top_k to also get the k largest values of each output with their " <>
            "indices (for a classifier: the top-k classes).",
        "inputSchema" => %{
          "type" => "object",
          "properties" => %{
            "model" => @model_property,
            "input" => %{
              "type" => "object",
              "minProperties" => 1,
              "description" =>
                ~s({"data": [[1, 2, 3]], "dtype": "s64", "shape": [1, 3]} for a single-input ) <>
                  ~s|model ("dtype" and "shape" optional), or {"input_a": {"data": ...}, | <>
                  ~s("input_b": {"data": ...}} naming each input of a multi-input model.)
            },
            "top_k" => %{
              "type" => "integer",
              "minimum" => 1,
              "maximum" => @max_top_k,
              "description" => "Also return the k largest values of each output, with indices."
            }
          },
          "required" => ["model", "input"],
          "additionalProperties" => false
        },
        "outputSchema" => %{
          "type" => "object",
          "properties" => %{
            "model" => %{"type" => "string"},
            "predictions" => %{
              "type" => "object",
              "description" =>
                "One entry per model output, keyed by output name: the values as nested " <>
                  "lists (tensor), their shape and dtype, and top_k when asked.",
              "additionalProperties" => @prediction_schema
            },
            "duration_ms" => %{"type" => "number"}
          },
          "required" => ["model", "predictions"]
        },
        "annotations" => %{"readOnlyHint" => true, "openWorldHint" => false}
      },
      %{
        "name" => "list_models",
        "title" => "List the ONNX models",
        "description" =>
          "Lists the ONNX models (.onnx files) in the model directory with their input and " <>
            "output signatures: name, dtype and shape, where a null dimension accepts any " <>
            "size (usually the batch). Use a model's name as the \"model\" argument of " <>
            "onnx_infer and model_info. Takes no arguments.",
        "inputSchema" => %{
          "type" => "object",
          "properties" => %{},
          "additionalProperties" => false
        },
        "outputSchema" => %{
          "type" => "object",
          "properties" => %{
            "models" => %{
              "type" => "array",
              "items" => %{
                "type" => "object",
                "properties" => %{
                  "model" => %{"type" => "string"},
                  "bytes" => %{"type" => ["integer", "null"]},
                  "inputs" => %{"type" => "array", "items" => @value_info_schema},
                  "outputs" => %{"type" => "array", "items" => @value_info_schema},
                  "error" => %{"type" => "string"}
                },
                "required" => ["model"]
              }
            },
            "count" => %{"type" => "integer"},
            "truncated" => %{"type" => "boolean"}
          },
          "required" => ["models", "count", "truncated"]
        },
        "annotations" => %{"readOnlyHint" => true, "openWorldHint" => false}
      },
      %{
        "name" => "model_info",
        "title" => "Describe an ONNX model",
        "description" =>
          "Describes one model in the model directory: its inputs and outputs (name, dtype, " <>
            "shape; a null dimension accepts any size), opset, IR version, producer, parameter " <>
            "count (elements in all initializers) and custom metadata.",
        "inputSchema" => %{
          "type" => "object",
          "properties" => %{"model" => @model_property},
          "required" => ["model"],
          "additionalProperties" => false
        },
        "outputSchema" => %{
          "type" => "object",
          "properties" => %{
            "model" => %{"type" => "string"},
            "bytes" => %{"type" => ["integer", "null"]},
            "inputs" => %{"type" => "array", "items" => @value_info_schema},
            "outputs" => %{"type" => "array", "items" => @value_info_schema},
            "opset" => %{"type" => ["integer", "null"]},
            "ir_version" => %{"type" => ["integer", "null"]},
            "producer" => %{"type" => ["string", "null"]},
            "parameter_count" => %{"type" => "integer"},
            "metadata" => %{"type" => "object"}
          },
          "required" => ["model", "inputs", "outputs", "parameter_count"]
        },
        "annotations" => %{"readOnlyHint" => true, "openWorldHint" => false}
      }
    ]
  end
end
