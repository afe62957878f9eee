# Option and unit builders shared by the UltraCloud NixOS modules (not a module itself).
# Every daemon reads its settings from ULTRACLOUD_* variables (lib/config/daemon.ts); secrets
# reach it through systemd credentials (LoadCredential), so they never enter the Nix store and
# the service user never needs read access to the original files.
{ lib, pkgs }:
let
  inherit (lib) mkOption types;

  secretFile = description:
    mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "/run/secrets/ultracloud/file";
      description = ''
        ${description}
        An absolute path outside the Nix store, read by systemd as a credential
        (`LoadCredential`) and passed to the daemon as `%d/<name>`.
      '';
    };

  # The port of a `host:port` or `[v6]:port` listen address.
  portOf = listen: lib.toInt (lib.last (lib.splitString ":" listen));
in
{
  inherit secretFile portOf;

  # Environment of the servers that hold one long-lived TLS stream per host (host-controller,
  # fleet-scheduler), for the C library rather than the daemon: glibc serves allocations of
  # 64 KiB and more with fresh mmap'd pages instead of recycling freed heap memory. Node gives
  # every TLS connection a 64 KiB read block which an idle stream barely writes; recycled from
  # the heap it is resident in full, fresh it costs only the pages used (at 10,000 agents, 68-70
  # instead of 102 KiB of native memory per stream; docs/performance.md, "Idle streams and the C
  # allocator"). The 32 KiB buffers Node takes and gives back on every read stay on the heap.
  # The benchmark reads the same file.
  streamServerEnvironment = builtins.fromJSON (builtins.readFile ./stream-server-environment.json);

  # Options of every UltraCloud process run by systemd.
  processOptions = { component, what }: {
    enable = lib.mkEnableOption what;

    package = lib.mkPackageOption pkgs "ultracloud" { };

    stateDirectory = mkOption {
      type = types.str;
      default = "ultracloud/${component}";
      description = ''
        State directory below /var/lib, created by systemd (`StateDirectory`) and passed as
        ULTRACLOUD_STATE_DIR.
      '';
    };

    logLevel = mkOption {
      type = types.enum [ "trace" "debug" "info" "warn" "error" "fatal" "silent" ];
      default = "info";
      description = "Log level (ULTRACLOUD_LOG_LEVEL).";
    };

    extraEnvironment = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = { ULTRACLOUD_INSTALL_TIMEOUT = "30m"; };
      description = "Extra environment variables of the unit; they override the ones set here.";
    };
  };

  # Options of a gRPC service (deployer, host-controller, fleet-scheduler).
  serviceOptions = { component, defaultListen }: {
    listen = mkOption {
      type = types.str;
      default = defaultListen;
      example = "0.0.0.0:${toString (portOf defaultListen)}";
      description = ''
        Address to serve gRPC on, `host:port` (ULTRACLOUD_LISTEN). Plaintext is only allowed on
        loopback: set the TLS certificate and key to listen on other addresses. The state
        directory holds the admin token, the CA bundle and, without a database URL, the embedded
        PGlite database of the ${component}.
      '';
    };

    openFirewall = mkOption {
      type = types.bool;
      default = false;
      description = "Open the listen port in the firewall.";
    };
  };

  # TLS options of a service (server side; the CA enables client-certificate checks).
  serverTlsOptions = {
    tlsCertFile = secretFile "PEM server certificate (ULTRACLOUD_TLS_CERT).";
    tlsKeyFile = secretFile "PEM private key of the server certificate (ULTRACLOUD_TLS_KEY).";
    tlsCaFile = secretFile "PEM CA bundle used to verify client certificates (ULTRACLOUD_TLS_CA).";
  };

  # Database options of a service that owns a Postgres schema.
  databaseOptions = {
    databaseUrl = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "postgresql://ultracloud@/ultracloud?host=/run/postgresql";
      description = ''
        PostgreSQL URL (ULTRACLOUD_DATABASE_URL). It ends up in the unit file in the Nix store,
        so it must not contain a password: use `databaseUrlFile` for that. With neither set the
        daemon uses embedded PGlite in its state directory.
      '';
    };
    databaseUrlFile = secretFile "File whose content is the PostgreSQL URL (may contain a password).";
  };

  # Client TLS of an agent: the node certificate the installer wrote (mTLS to its controller).
  agentTlsOptions = {
    tlsCertFile = secretFile "PEM node certificate, issued at install (ULTRACLOUD_TLS_CERT)." // {
      default = "/var/lib/ultracloud/credentials/tls.crt";
    };
    tlsKeyFile = secretFile "PEM private key of the node certificate (ULTRACLOUD_TLS_KEY)." // {
      default = "/var/lib/ultracloud/credentials/tls.key";
    };
    caFile = secretFile "PEM cluster CA bundle that signed the controller's certificate (ULTRACLOUD_CA)." // {
      default = "/var/lib/ultracloud/credentials/ca.pem";
    };
  };

  agentCredentials = cfg: {
    "tls.crt" = { file = cfg.tlsCertFile; env = "ULTRACLOUD_TLS_CERT"; };
    "tls.key" = { file = cfg.tlsKeyFile; env = "ULTRACLOUD_TLS_KEY"; };
    "ca.pem" = { file = cfg.caFile; env = "ULTRACLOUD_CA"; };
  };

  # Server TLS of a control-plane service, from serverTlsOptions.
  serverCredentials = cfg: {
    "tls.crt" = { file = cfg.tlsCertFile; env = "ULTRACLOUD_TLS_CERT"; };
    "tls.key" = { file = cfg.tlsKeyFile; env = "ULTRACLOUD_TLS_KEY"; };
    "client-ca.pem" = { file = cfg.tlsCaFile; env = "ULTRACLOUD_TLS_CA"; };
  };

  # The systemd unit (and firewall rule) of one UltraCloud process.
  #   credentials: { <credential name> = { file = path-or-null; env = "ULTRACLOUD_..."; }; }
  #   serviceConfig: extra or overriding [Service] settings (user, hardening).
  # Modules add unit settings of their own with lib.mkMerge (list options such as `after` merge).
  daemonConfig =
    { component, cfg, description, environment ? { }, credentials ? { }, serviceConfig ? { } }:
    let
      loaded = lib.filterAttrs (_: c: c.file != null) credentials;
      dbUrlFile = cfg.databaseUrlFile or null;
      command = "${cfg.package}/bin/ultracloud ${component}";
      # The daemon reads the database URL from its environment only; a file needs a wrapper.
      start =
        if dbUrlFile == null then command
        else "${pkgs.writeShellScript "ultracloud-${component}-start" ''
          ULTRACLOUD_DATABASE_URL="$(< "$CREDENTIALS_DIRECTORY/database-url")"
          export ULTRACLOUD_DATABASE_URL
          exec ${command}
        ''}";
    in
    {
      systemd.services."ultracloud-${component}" = {
        inherit description;
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" ];
        environment =
          {
            ULTRACLOUD_STATE_DIR = "/var/lib/${cfg.stateDirectory}";
            ULTRACLOUD_LOG_LEVEL = cfg.logLevel;
          }
          // lib.optionalAttrs (cfg ? listen) { ULTRACLOUD_LISTEN = cfg.listen; }
          // lib.optionalAttrs ((cfg.databaseUrl or null) != null) { ULTRACLOUD_DATABASE_URL = cfg.databaseUrl; }
          // lib.mapAttrs' (name: c: lib.nameValuePair c.env "%d/${name}") loaded
          // environment
          // cfg.extraEnvironment;
        serviceConfig = {
          ExecStart = start;
          Restart = "on-failure";
          RestartSec = "5s";
          StateDirectory = cfg.stateDirectory;
          StateDirectoryMode = "0700";
          LoadCredential =
            lib.mapAttrsToList (name: c: "${name}:${c.file}") loaded
            ++ lib.optional (dbUrlFile != null) "database-url:${dbUrlFile}";
          UMask = "0077";
        } // serviceConfig;
      };

      networking.firewall.allowedTCPPorts = lib.optional (cfg.openFirewall or false) (portOf cfg.listen);
    };

  # systemd hardening of a network service that needs no privileges. Node's JIT needs writable
  # executable memory, so MemoryDenyWriteExecute stays off.
  serviceHardening = {
    DynamicUser = true;
    NoNewPrivileges = true;
    CapabilityBoundingSet = "";
    AmbientCapabilities = "";
    ProtectSystem = "strict";
    ProtectHome = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    ProtectHostname = true;
    ProtectClock = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectProc = "invisible";
    RestrictAddressFamilies = [ "AF_INET" "AF_INET6" "AF_UNIX" ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    LockPersonality = true;
    RemoveIPC = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" "~@privileged" ];
  };
}
