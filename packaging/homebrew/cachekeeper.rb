# Homebrew formula (head-only until the first tagged release: `brew install --HEAD
# ./cachekeeper.rb`): builds cachekeeper from source with cargo and runs it as a root
# service (a LaunchDaemon on macOS: `sudo brew services start cachekeeper`). On Linux,
# prefer the Debian/RPM package and its hardened systemd unit (systemd/cachekeeper.service).
class Cachekeeper < Formula
  desc "Keeps a shared Go module cache usable by everyone who shares it"
  homepage "https://github.com/cachekeeper/cachekeeper"
  license any_of: ["MIT", "Apache-2.0"]
  head "https://github.com/cachekeeper/cachekeeper.git", branch: "main"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    (etc/"cachekeeper").mkpath
    etc.install "systemd/config.toml" => "cachekeeper/config.toml" unless (etc/"cachekeeper/config.toml").exist?
    pkgshare.install "systemd/cachekeeper.service", "systemd/cachekeeper.sysusers", "systemd/cachekeeper.tmpfiles"
    man1.install "packaging/man/cachekeeper.1", "packaging/man/cachekeeperctl.1"
    bash_completion.install "packaging/completions/bash/cachekeeper", "packaging/completions/bash/cachekeeperctl"
    zsh_completion.install "packaging/completions/zsh/_cachekeeper", "packaging/completions/zsh/_cachekeeperctl"
    fish_completion.install "packaging/completions/fish/cachekeeper.fish",
                            "packaging/completions/fish/cachekeeperctl.fish"
  end

  def caveats
    <<~EOS
      Edit #{etc}/cachekeeper/config.toml, then start the service as root:
        sudo brew services start cachekeeper
      On Linux the hardened systemd unit is in #{opt_pkgshare}.
    EOS
  end

  service do
    run [opt_bin/"cachekeeper", "--config", etc/"cachekeeper/config.toml"]
    require_root true
    keep_alive true
    log_path var/"log/cachekeeper.log"
    error_log_path var/"log/cachekeeper.log"
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/cachekeeper --version")
    (testpath/"mod/cache/download").mkpath
    system bin/"cachekeeper", "--init", "--path", testpath/"mod"
    system bin/"cachekeeper", "--check", "--path", testpath/"mod"
  end
end
