defmodule Thunderbolt.ModelDir do
  @moduledoc """
  The directory that model paths from untrusted callers are confined to.

  A language model choosing a `model_path` in a tool call must not be able
  to make the server read `/etc/passwd` or a model outside the models it was
  given. `resolve/2` turns such a path into an absolute path inside the
  directory, or refuses it:

    * absolute paths outside the directory,
    * any `..` segment (even one that would stay inside),
    * symbolic links, at any depth, whose target lies outside,
    * NUL bytes and anything that is not a string.

  The directory is `THUNDERBOLT_MODEL_DIR` when set, else
  `config :thunderbolt, :model_dir`, else `priv/models`, expanded against
  the current directory. It is read on every call, so a change to the
  environment or the config takes effect at once.

      iex> dir = Path.join(System.tmp_dir!(), "thunderbolt_model_dir_doctest")
      iex> File.mkdir_p!(dir)
      iex> File.write!(Path.join(dir, "model.onnx"), "")
      iex> Thunderbolt.ModelDir.resolve("model.onnx", dir)
      {:ok, Path.join(dir, "model.onnx")}
      iex> Thunderbolt.ModelDir.resolve("../model.onnx", dir)
      {:error, {:forbidden_path, "../model.onnx"}}
      iex> Thunderbolt.ModelDir.resolve("/etc/passwd", dir)
      {:error, {:forbidden_path, "/etc/passwd"}}
      iex> Thunderbolt.ModelDir.resolve("missing.onnx", dir)
      {:error, {:file_not_found, "missing.onnx"}}
  """

  require Record

  Record.defrecordp(:file_info, Record.extract(:file_info, from_lib: "kernel/include/file.hrl"))

  # Linux's own limit on symbolic links followed while resolving one path.
  @max_link_hops 40

  @type error :: {:forbidden_path, String.t()} | {:file_not_found, String.t()}

  @doc """
  The model directory, as an absolute path. See the module doc for where it
  comes from. The setting is read on every call; a relative setting is
  expanded against the working directory the first time it is seen.
  """
  @spec dir() :: String.t()
  def dir do
    # :os.getenv/1 with the name as a literal charlist: half the cost of
    # System.get_env/1, which converts the name on every call.
    case :os.getenv(~c"THUNDERBOLT_MODEL_DIR") do
      false -> expand(Application.get_env(:thunderbolt, :model_dir, "priv/models"))
      value -> from_env(value)
    end
  end

  # The variable's value as an expanded string. Converting the charlist
  # costs more than reading it (0.2 us for a short path), and the value
  # rarely changes: the last one seen is remembered with its expansion.
  defp from_env(chars) do
    key = {__MODULE__, :from_env}

    case :persistent_term.get(key, nil) do
      {^chars, dir} ->
        dir

      _ ->
        dir = chars |> List.to_string() |> expand()
        :persistent_term.put(key, {chars, dir})
        dir
    end
  end

  @doc """
  Resolves `model_path` inside `dir` to the absolute path of a regular file.

  A relative path is taken relative to `dir`; an absolute one must already
  lie inside it. Returns `{:error, {:forbidden_path, model_path}}` for every
  attempt to leave the directory, whether or not the target exists, and
  `{:error, {:file_not_found, model_path}}` when the path stays inside but
  names no regular file. The error carries the path as the caller gave it.

  When a symbolic link is followed the result is the link's real target, so
  two names for one file resolve to the same path.
  """
  @spec resolve(term(), String.t()) :: {:ok, String.t()} | {:error, error()}
  def resolve(model_path, dir \\ dir())

  def resolve(model_path, dir) when is_binary(model_path) and is_binary(dir) do
    dir = expand(dir)

    with :ok <- check_text(model_path),
         {:ok, below} <- segments_below(model_path, dir) do
      locate(dir, below, model_path)
    end
  end

  def resolve(model_path, _dir), do: {:error, {:forbidden_path, inspect(model_path, limit: 5)}}

  # Path.expand/1 costs microseconds, and about 20 us for a relative path
  # (the working directory and the home directory are calls to other
  # processes): more than the inference itself. A clean absolute path needs
  # none of it; any other is expanded once and remembered. The setting is
  # still read on every call, so a new setting takes effect at once; only a
  # File.cd/1 after the first call is not followed for a relative setting.
  defp expand(path) do
    if clean_absolute?(path) do
      path
    else
      key = {__MODULE__, :expanded, path}

      case :persistent_term.get(key, nil) do
        nil ->
          expanded = Path.expand(path)
          :persistent_term.put(key, expanded)
          expanded

        expanded ->
          expanded
      end
    end
  end

  # "/" followed by segments none of which is empty, "." or "..": a path
  # that Path.expand/1 would return unchanged. One pass over the bytes
  # (String.contains?/2 with a list of patterns compiled a matcher on
  # every call: 2.8 us).
  defp clean_absolute?(<<?/, rest::binary>>), do: clean_segments?(rest, :empty)
  defp clean_absolute?(_path), do: false

  # `state` says what the segment read so far is: empty, ".", ".." or
  # anything else (`:name`).
  defp clean_segments?(<<>>, state), do: state == :name
  defp clean_segments?(<<?/, rest::binary>>, :name), do: clean_segments?(rest, :empty)
  defp clean_segments?(<<?/, _rest::binary>>, _state), do: false
  defp clean_segments?(<<?., rest::binary>>, :empty), do: clean_segments?(rest, :dot)
  defp clean_segments?(<<?., rest::binary>>, :dot), do: clean_segments?(rest, :dot_dot)
  defp clean_segments?(<<_, rest::binary>>, _state), do: clean_segments?(rest, :name)

  defp check_text(path) do
    cond do
      not String.valid?(path) -> {:error, {:forbidden_path, inspect(path, limit: 5)}}
      String.contains?(path, <<0>>) -> {:error, {:forbidden_path, inspect(path)}}
      ".." in String.split(path, "/") -> {:error, {:forbidden_path, path}}
      true -> :ok
    end
  end

  # The path's segments below `dir`, checked lexically (no file system yet).
  defp segments_below(path, dir) do
    case Path.type(path) do
      :absolute ->
        # No ".." is left, so expanding only drops "." and doubled slashes.
        case strip_prefix(Path.split(Path.expand(path)), Path.split(dir)) do
          {:ok, below} -> {:ok, below}
          # `dir` may itself sit behind a symbolic link; compare real paths.
          :error -> real_segments_below(path, dir)
        end

      _relative ->
        {:ok, path |> Path.split() |> Enum.reject(&(&1 in [".", "/"]))}
    end
  end

  defp real_segments_below(path, dir) do
    with {:ok, real} <- realpath(path),
         {:ok, real_dir} <- realpath(dir),
         {:ok, below} <- strip_prefix(Path.split(real), Path.split(real_dir)) do
      {:ok, below}
    else
      _ -> {:error, {:forbidden_path, path}}
    end
  end

  # Walks the segments below `dir` with one lstat each. Without a symbolic
  # link among them the path is inside by construction; with one, its real
  # path must be.
  defp locate(dir, below, original), do: locate(dir, below, dir, original)

  defp locate(_dir, [], _path, original), do: {:error, {:file_not_found, original}}

  defp locate(dir, [segment | rest], parent, original) do
    path = if parent == "/", do: "/" <> segment, else: parent <> "/" <> segment

    case {lstat(path), rest} do
      {{:ok, file_info(type: :symlink)}, _} ->
        locate_real(dir, Path.join([path | rest]), original)

      {{:ok, file_info(type: :regular)}, []} ->
        {:ok, path}

      {{:ok, file_info(type: :directory)}, [_ | _]} ->
        locate(dir, rest, path, original)

      _ ->
        {:error, {:file_not_found, original}}
    end
  end

  defp locate_real(dir, candidate, original) do
    with {:ok, real} <- realpath(candidate),
         {:ok, real_dir} <- realpath(dir),
         {:ok, _} <- strip_prefix(Path.split(real), Path.split(real_dir)) do
      if match?({:ok, file_info(type: :regular)}, :file.read_file_info(real, [:raw])),
        do: {:ok, real},
        else: {:error, {:file_not_found, original}}
    else
      _ -> {:error, {:forbidden_path, original}}
    end
  end

  defp strip_prefix(segments, []), do: {:ok, segments}
  defp strip_prefix([same | rest], [same | prefix_rest]), do: strip_prefix(rest, prefix_rest)
  defp strip_prefix(_segments, _prefix), do: :error

  @doc false
  # The absolute path with every symbolic link resolved, like realpath(3),
  # except that a missing tail is kept as written instead of failing.
  @spec realpath(String.t()) :: {:ok, String.t()} | {:error, :eloop}
  def realpath(path) do
    ["/" | segments] = path |> Path.expand() |> Path.split()
    walk([], segments, 0)
  end

  defp walk(_done, _todo, hops) when hops > @max_link_hops, do: {:error, :eloop}
  defp walk(done, [], _hops), do: {:ok, join_reversed(done)}
  defp walk(done, ["." | todo], hops), do: walk(done, todo, hops)
  defp walk([], [".." | todo], hops), do: walk([], todo, hops)
  defp walk([_ | done], [".." | todo], hops), do: walk(done, todo, hops)

  defp walk(done, [segment | todo], hops) do
    path = join_reversed([segment | done])

    case lstat(path) do
      {:ok, file_info(type: :symlink)} ->
        case :file.read_link_all(path) do
          {:ok, target} ->
            target = IO.chardata_to_string(target)

            case Path.split(target) do
              ["/" | target_segments] -> walk([], target_segments ++ todo, hops + 1)
              target_segments -> walk(done, target_segments ++ todo, hops + 1)
            end

          {:error, _} ->
            walk([segment | done], todo, hops)
        end

      _ ->
        walk([segment | done], todo, hops)
    end
  end

  defp join_reversed(reversed), do: Path.join(["/" | Enum.reverse(reversed)])

  defp lstat(path), do: :file.read_link_info(path, [:raw])
end
