defmodule Thunderbolt.ModelDirTest do
  use ExUnit.Case, async: true
  doctest Thunderbolt.ModelDir

  alias Thunderbolt.ModelDir

  # root/
  #   models/            the model directory
  #     model.onnx
  #     sub/nested.onnx
  #     sub/deeper/
  #     inside_link.onnx     -> model.onnx
  #     sub_link             -> sub
  #     outside_link.onnx    -> ../outside/secret.onnx
  #     outside_dir          -> ../outside
  #     absolute_link.onnx   -> <root>/outside/secret.onnx
  #     dangling_out.onnx    -> ../outside/missing.onnx
  #     loop_a -> loop_b, loop_b -> loop_a
  #     climb                -> sub/../../outside
  #   outside/secret.onnx
  #   models_sibling/evil.onnx   (shares the prefix "models")
  #   models_link          -> models
  setup do
    root = Path.join(System.tmp_dir!(), "tb_model_dir_#{System.unique_integer([:positive])}")
    models = Path.join(root, "models")
    File.mkdir_p!(Path.join(models, "sub/deeper"))
    File.mkdir_p!(Path.join(root, "outside"))
    File.mkdir_p!(Path.join(root, "models_sibling"))

    for file <-
          ["models/model.onnx", "models/sub/nested.onnx", "outside/secret.onnx"] ++
            ["models_sibling/evil.onnx"] do
      File.write!(Path.join(root, file), "model bytes")
    end

    links = [
      {"model.onnx", "models/inside_link.onnx"},
      {"sub", "models/sub_link"},
      {"../outside/secret.onnx", "models/outside_link.onnx"},
      {"../outside", "models/outside_dir"},
      {Path.join(root, "outside/secret.onnx"), "models/absolute_link.onnx"},
      {"../outside/missing.onnx", "models/dangling_out.onnx"},
      {"loop_b", "models/loop_a"},
      {"loop_a", "models/loop_b"},
      {"sub/../../outside", "models/climb"},
      {"models", "models_link"}
    ]

    for {target, link} <- links, do: :ok = File.ln_s(target, Path.join(root, link))
    on_exit(fn -> File.rm_rf!(root) end)
    %{root: root, models: models}
  end

  describe "resolve/2 inside the directory" do
    test "a relative path becomes the absolute path of the file", %{models: models} do
      assert ModelDir.resolve("model.onnx", models) == {:ok, Path.join(models, "model.onnx")}

      assert ModelDir.resolve("sub/nested.onnx", models) ==
               {:ok, Path.join(models, "sub/nested.onnx")}
    end

    test "redundant . segments and doubled slashes are fine", %{models: models} do
      assert ModelDir.resolve("./model.onnx", models) == {:ok, Path.join(models, "model.onnx")}

      assert ModelDir.resolve("sub//./nested.onnx", models) ==
               {:ok, Path.join(models, "sub/nested.onnx")}
    end

    test "an absolute path inside is accepted", %{models: models} do
      path = Path.join(models, "sub/nested.onnx")
      assert ModelDir.resolve(path, models) == {:ok, path}
    end

    test "the directory may be given unexpanded", %{models: models} do
      assert ModelDir.resolve("model.onnx", models <> "/sub/..//") ==
               {:ok, Path.join(models, "model.onnx")}
    end

    test "a symbolic link that stays inside resolves to its target", %{models: models} do
      assert ModelDir.resolve("inside_link.onnx", models) ==
               {:ok, Path.join(models, "model.onnx")}

      assert ModelDir.resolve("sub_link/nested.onnx", models) ==
               {:ok, Path.join(models, "sub/nested.onnx")}
    end

    test "a directory reached through a symbolic link works, by either name", %{root: root} do
      dir = Path.join(root, "models_link")
      real = Path.join(root, "models/model.onnx")

      assert ModelDir.resolve("model.onnx", dir) == {:ok, Path.join(dir, "model.onnx")}
      assert ModelDir.resolve(real, dir) == {:ok, Path.join(dir, "model.onnx")}
    end

    test "a path that is not there, or not a file, is not found", %{models: models} do
      for path <- ["missing.onnx", "sub/missing.onnx", "sub", "sub/deeper", "", ".", "~/x.onnx"] do
        assert ModelDir.resolve(path, models) == {:error, {:file_not_found, path}},
               "for #{inspect(path)}"
      end
    end
  end

  describe "resolve/2 refuses every way out" do
    test "any .. segment, even one that would stay inside", %{models: models} do
      for path <- [
            "..",
            "../outside/secret.onnx",
            "sub/../model.onnx",
            "sub/../../outside/secret.onnx",
            "sub/deeper/../../../outside/secret.onnx",
            "./../outside/secret.onnx",
            "../models/model.onnx",
            Path.join(models, "../outside/secret.onnx")
          ] do
        assert ModelDir.resolve(path, models) == {:error, {:forbidden_path, path}},
               "for #{inspect(path)}"
      end
    end

    test "absolute paths outside, existing or not", %{root: root, models: models} do
      for path <- [
            "/etc/passwd",
            "/",
            Path.join(root, "outside/secret.onnx"),
            Path.join(root, "outside/missing.onnx"),
            # A prefix of the path as a string, but a different directory.
            Path.join(root, "models_sibling/evil.onnx"),
            root
          ] do
        assert ModelDir.resolve(path, models) == {:error, {:forbidden_path, path}},
               "for #{inspect(path)}"
      end
    end

    test "symbolic links whose target is outside, at any depth", %{models: models} do
      for path <- [
            "outside_link.onnx",
            "outside_dir/secret.onnx",
            "outside_dir/missing.onnx",
            "absolute_link.onnx",
            "dangling_out.onnx",
            "climb/secret.onnx",
            Path.join(models, "outside_link.onnx")
          ] do
        assert ModelDir.resolve(path, models) == {:error, {:forbidden_path, path}},
               "for #{inspect(path)}"
      end
    end

    test "a symbolic link loop", %{models: models} do
      assert ModelDir.resolve("loop_a", models) == {:error, {:forbidden_path, "loop_a"}}

      assert ModelDir.resolve("loop_a/x.onnx", models) ==
               {:error, {:forbidden_path, "loop_a/x.onnx"}}
    end

    test "NUL bytes, invalid UTF-8 and anything that is not a string", %{models: models} do
      assert {:error, {:forbidden_path, _}} = ModelDir.resolve("model.onnx\0.txt", models)
      assert {:error, {:forbidden_path, _}} = ModelDir.resolve(<<0xFF, 0xFE>>, models)

      for path <- [nil, 42, :model, ~c"model.onnx", ["model.onnx"], %{path: "model.onnx"}] do
        assert {:error, {:forbidden_path, _}} = ModelDir.resolve(path, models)
      end
    end
  end

  describe "realpath/1" do
    test "follows relative, absolute and chained links", %{root: root, models: models} do
      assert ModelDir.realpath(Path.join(models, "outside_link.onnx")) ==
               {:ok, Path.join(root, "outside/secret.onnx")}

      assert ModelDir.realpath(Path.join(models, "climb/secret.onnx")) ==
               {:ok, Path.join(root, "outside/secret.onnx")}

      assert ModelDir.realpath(Path.join(root, "models_link/sub_link/nested.onnx")) ==
               {:ok, Path.join(models, "sub/nested.onnx")}
    end

    test "keeps a missing tail and reports loops", %{models: models} do
      assert ModelDir.realpath(Path.join(models, "sub/a/b")) ==
               {:ok, Path.join(models, "sub/a/b")}

      assert ModelDir.realpath(Path.join(models, "loop_a")) == {:error, :eloop}
    end
  end
end

defmodule Thunderbolt.ModelDir.DirTest do
  # Changes the environment and the application config: not async.
  use ExUnit.Case, async: false

  alias Thunderbolt.ModelDir

  setup do
    env = System.get_env("THUNDERBOLT_MODEL_DIR")
    config = Application.fetch_env(:thunderbolt, :model_dir)

    on_exit(fn ->
      if env,
        do: System.put_env("THUNDERBOLT_MODEL_DIR", env),
        else: System.delete_env("THUNDERBOLT_MODEL_DIR")

      case config do
        {:ok, value} -> Application.put_env(:thunderbolt, :model_dir, value)
        :error -> Application.delete_env(:thunderbolt, :model_dir)
      end
    end)
  end

  describe "dir/0" do
    test "defaults to priv/models under the current directory" do
      System.delete_env("THUNDERBOLT_MODEL_DIR")
      Application.delete_env(:thunderbolt, :model_dir)
      assert ModelDir.dir() == Path.expand("priv/models")
    end

    test "reads the config, then the environment variable, at every call" do
      System.delete_env("THUNDERBOLT_MODEL_DIR")
      Application.put_env(:thunderbolt, :model_dir, "/srv/from_config")
      assert ModelDir.dir() == "/srv/from_config"

      System.put_env("THUNDERBOLT_MODEL_DIR", "/srv/from_env/")
      assert ModelDir.dir() == "/srv/from_env"
      assert ModelDir.dir() == "/srv/from_env"

      System.put_env("THUNDERBOLT_MODEL_DIR", "/srv/changed")
      assert ModelDir.dir() == "/srv/changed"

      Application.put_env(:thunderbolt, :model_dir, "relative/models")
      System.delete_env("THUNDERBOLT_MODEL_DIR")
      assert ModelDir.dir() == Path.expand("relative/models")
    end

    test "is always what Path.expand/1 makes of the setting" do
      System.delete_env("THUNDERBOLT_MODEL_DIR")

      for dir <-
            ~w(/srv/models /srv/models/ /srv//models /srv/./models /srv/x/../models /srv/. /srv/..
               / /srv/.models /srv/models. /srv/... /srv/..x /.a/b models ./models) do
        Application.put_env(:thunderbolt, :model_dir, dir)
        assert ModelDir.dir() == Path.expand(dir), "for #{dir}"

        System.put_env("THUNDERBOLT_MODEL_DIR", dir)
        assert ModelDir.dir() == Path.expand(dir), "for THUNDERBOLT_MODEL_DIR=#{dir}"
        System.delete_env("THUNDERBOLT_MODEL_DIR")
      end
    end
  end

  describe "resolve/1" do
    test "uses dir/0" do
      dir = Path.join(System.tmp_dir!(), "tb_model_dir_env_#{System.unique_integer([:positive])}")
      File.mkdir_p!(dir)
      File.write!(Path.join(dir, "m.onnx"), "")
      on_exit(fn -> File.rm_rf!(dir) end)

      System.put_env("THUNDERBOLT_MODEL_DIR", dir)
      assert ModelDir.resolve("m.onnx") == {:ok, Path.join(dir, "m.onnx")}
      assert ModelDir.resolve("../m.onnx") == {:error, {:forbidden_path, "../m.onnx"}}
    end
  end
end
