defmodule Thunderbolt.MCP.ModelCatalog do
  @moduledoc """
  What the `list_models` and `model_info` tools report about the models in
  a model directory, as JSON-ready maps with string keys.

  Every model path goes through `Thunderbolt.ModelDir.resolve/2`, so a name
  that leaves the directory (`..`, an absolute path elsewhere, a symbolic
  link pointing out) is refused exactly as `Thunderbolt.OnnxInference`
  refuses it. Sessions come from `Thunderbolt.ModelServer`, so describing a
  model also warms the cache that inference then hits.

  A signature lists a model's inputs or outputs as
  `%{"name" => ..., "dtype" => ..., "shape" => [...]}` where `dtype` is a
  `Thunderbolt.Tensor` type name such as `"s64"` or `"f32"` and a `null`
  dimension may take any size (usually the batch):

      iex> Thunderbolt.MCP.ModelCatalog.signature([%{name: "input_ids", type: {:s, 64}, shape: {nil, 40}}])
      [%{"name" => "input_ids", "dtype" => "s64", "shape" => [nil, 40]}]
  """

  require Logger

  alias Thunderbolt.{ModelDir, ModelServer, Session, Tensor}
  alias Thunderbolt.MCP.ModelProto

  @max_models 200
  @max_depth 8
  @extension ".onnx"

  @doc """
  The `.onnx` files under `dir` (subdirectories included, at most
  #{@max_depth} levels and #{@max_models} models), sorted by path, each with
  its size and signatures, or with an `"error"` when it cannot be loaded.
  Files whose real location is outside `dir` are left out.
  """
  @spec list(Path.t()) :: map()
  def list(dir) do
    dir = Path.expand(dir)

    case File.dir?(dir) do
      true ->
        paths = dir |> onnx_files("", 0) |> Enum.sort()
        {shown, rest} = Enum.split(paths, @max_models)
        models = shown |> Enum.map(&entry(&1, dir)) |> Enum.reject(&is_nil/1)

        %{"models" => models, "count" => length(models), "truncated" => rest != []}

      false ->
        Logger.warning("model directory #{dir} does not exist")
        %{"models" => [], "count" => 0, "truncated" => false}
    end
  end

  @doc """
  The facts about one model: its size, inputs, outputs, IR version, opset
  imports, producer, parameter count and custom metadata. `model` is a path
  relative to `dir` and must name an `.onnx` file.

  The session is fetched with the same (default) load options as
  `Thunderbolt.OnnxInference` uses, so both share one cache entry.
  """
  @spec info(String.t(), Path.t()) :: {:ok, map()} | {:error, term()}
  def info(model, dir) do
    with {:ok, path} <- ModelDir.resolve(model, dir),
         :ok <- check_extension(path, model),
         {:ok, session} <- fetch(path),
         {:ok, proto} <- ModelProto.read(path) do
      %Session{metadata: meta} = session

      {:ok,
       %{
         "model" => model,
         "bytes" => file_size(path),
         "inputs" => signature(session.inputs),
         "outputs" => signature(session.outputs),
         "opset" => meta[:opset],
         "opset_imports" =>
           Enum.map(proto.opset_imports, &%{"domain" => &1.domain, "version" => &1.version}),
         "ir_version" => proto.ir_version,
         "producer" => meta[:producer] || proto.producer_name,
         "producer_version" => proto.producer_version,
         "parameter_count" => proto.parameter_count,
         "initializer_count" => proto.initializer_count,
         "graph_name" => meta[:graph_name],
         "description" => meta[:description],
         "metadata" => meta[:custom] || %{},
         "providers" => session.providers
       }}
    end
  end

  @doc """
  Inputs or outputs of a `Thunderbolt.Session` as JSON-ready maps.
  """
  @spec signature([Session.value_info()]) :: [map()]
  def signature(values) do
    Enum.map(values, fn %{name: name, type: type, shape: shape} ->
      %{
        "name" => name,
        "dtype" => type && Tensor.type_string(type),
        "shape" => Tuple.to_list(shape)
      }
    end)
  end

  defp entry(relative, dir) do
    case ModelDir.resolve(relative, dir) do
      {:ok, path} ->
        base = %{"model" => relative, "bytes" => file_size(path)}

        case fetch(path) do
          {:ok, session} ->
            Map.merge(base, %{
              "inputs" => signature(session.inputs),
              "outputs" => signature(session.outputs)
            })

          {:error, reason} ->
            Map.put(base, "error", Thunderbolt.MCP.Tools.describe_error(reason, relative))
        end

      {:error, {:forbidden_path, _}} ->
        Logger.warning("list_models: #{relative} leads outside the model directory; left out")
        nil

      {:error, _} ->
        nil
    end
  end

  # Relative paths of .onnx files below `dir`. Symbolic links to directories
  # are not followed, so a link cycle cannot trap the walk; links to files
  # are listed and then confined by ModelDir.resolve/2.
  defp onnx_files(_dir, _relative, depth) when depth > @max_depth, do: []

  defp onnx_files(dir, relative, depth) do
    case File.ls(Path.join(dir, relative)) do
      {:ok, names} ->
        Enum.flat_map(names, fn name ->
          child = if relative == "", do: name, else: Path.join(relative, name)

          case File.lstat(Path.join(dir, child)) do
            {:ok, %File.Stat{type: :directory}} ->
              if String.starts_with?(name, "."), do: [], else: onnx_files(dir, child, depth + 1)

            {:ok, %File.Stat{type: type}} when type in [:regular, :symlink] ->
              if Path.extname(name) == @extension, do: [child], else: []

            _ ->
              []
          end
        end)

      {:error, _} ->
        []
    end
  end

  # The load options and error reasons of Thunderbolt.OnnxInference, so that
  # both share one cache entry and word failures alike.
  defp fetch(path) do
    case ModelServer.fetch(path, []) do
      {:ok, session} -> {:ok, session}
      {:error, {:file_not_found, _}} = error -> error
      {:error, reason} -> {:error, {:load_failed, reason}}
    end
  end

  # As Thunderbolt.OnnxInference does: only .onnx files are models.
  defp check_extension(path, model) do
    if Path.extname(path) == @extension, do: :ok, else: {:error, {:invalid_extension, model}}
  end

  defp file_size(path) do
    case File.stat(path) do
      {:ok, %File.Stat{size: size}} -> size
      {:error, _} -> nil
    end
  end
end
