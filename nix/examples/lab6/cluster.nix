# The 6-PC lab without BMCs: three Dell OptiPlex control-plane seeds fixed by MAC with static
# addresses, and any further OptiPlex with an SSD enrolled as worker-1, worker-2, … after a USB
# boot of the generic installer. One flat network behind the lab router; one disk policy that
# picks the internal Samsung SSD and never the USB stick.
#
# Evaluate:    nix-instantiate --eval --strict --json -A clusterState nix/examples/lab6
# Regenerate:  nix/examples/lab6/generate.sh   (writes ./generated/*.json)
let
  units = (import ../../lib/cluster-schema.nix).units;
  flake = "github:ultracloud/ultracloud";
in
{
  cluster = {
    name = "lab6";
    domain = "lab6.internal";
    # `ultracloud up` on the operator workstation serves all three services on one port, so the
    # host-controller and fleet-scheduler addresses default to this one.
    deployerAddress = "10.44.0.2:7000";
    rescueSshAuthorizedKeys = [
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ+jKKdzwqtSMZ7/9MSpqUXZhZ/3yDXIf/tKhTM52LzQ operator@lab6"
    ];
  };

  networks.lab = {
    cidr = "10.44.0.0/24";
    gateway = "10.44.0.1";
    dnsServers = [ "10.44.0.1" ];
    ntpServers = [ "0.nixos.pool.ntp.org" "1.nixos.pool.ntp.org" ];
    addressMode = "static";
    addressPool = { start = "10.44.0.21"; end = "10.44.0.99"; };
    description = "Lab switch behind the router at .1; the router's DHCP range .100-.199 serves the installer ISO, .2 is the operator workstation running `ultracloud up`, .11-.19 are fixed nodes.";
  };

  installProfiles = {
    control-plane = {
      flakeRef = flake;
      flakeAttr = "nixosConfigurations.{hostname}";
      diskPolicy = "system-ssd";
      network = "lab";
      description = "One NixOS configuration per fixed control-plane node, generated from nix/examples/lab6.";
    };
    worker = {
      flakeRef = flake;
      flakeAttr = "nixosConfigurations.worker";
      diskPolicy = "system-ssd";
      network = "lab";
      description = "One generic worker system; hostname, addresses and credentials come from the install plan.";
    };
  };

  diskPolicies.system-ssd = {
    # Samsung's OUI 002538 appears in the WWN/EUI-64 of its SSDs; the USB stick has no such WWN.
    rootDeviceHints = { wwn = "<in> 002538"; size = ">= 200"; rotational = false; };
    layout.partitions = [
      { name = "ESP"; size = "1GiB"; type = "esp"; filesystem = "vfat"; mountpoint = "/boot"; mountOptions = [ "umask=0077" ]; label = "ESP"; }
      { name = "root"; size = "rest"; filesystem = "ext4"; mountpoint = "/"; mountOptions = [ "noatime" ]; label = "nixos"; }
    ];
    wipePolicy = "metadata";
    description = "The internal Samsung SSD of each OptiPlex (WWN/EUI-64 contains Samsung's OUI 002538), never the USB installer stick: UEFI, 1 GiB ESP at /boot, ext4 root on the rest.";
  };

  nodeClasses = {
    control-plane = {
      installProfile = "control-plane";
      defaultLabels."ultracloud.io/role" = "control-plane";
      minimumHardware = { cpuCores = 4; memoryBytes = 16 * units.GiB; diskCount = 1; diskSizeBytes = 200 * units.GiB; nicCount = 1; nicSpeedMbps = 1000; };
      description = "Runs the UltraCloud services once the lab is self-hosting; takes no workload placements.";
    };
    worker = {
      installProfile = "worker";
      defaultLabels."ultracloud.io/role" = "worker";
      runNodeAgent = true;
      runtimeCapabilities = [ "processes" ];
      minimumHardware = { cpuCores = 4; memoryBytes = 8 * units.GiB; diskCount = 1; diskSizeBytes = 200 * units.GiB; nicCount = 1; nicSpeedMbps = 1000; };
      description = "Runs the node-agent and takes fleet-scheduler placements.";
    };
  };

  pools = {
    control = { labels."ultracloud.io/pool" = "control"; description = "The three control-plane seeds."; };
    workers = { labels."ultracloud.io/pool" = "workers"; description = "Every other lab PC."; };
  };

  enrollmentRules.optiplex-workers = {
    priority = 100;
    selector = {
      vendors = [ "Dell Inc." ];
      products = [ "OptiPlex 70?0" ];
      disks = { minCount = 1; minSizeBytes = 200 * units.GiB; rotational = false; };
    };
    class = "worker";
    pool = "workers";
    nodeIdTemplate = "worker-{index}";
    # The workers share the desk-4 power strip: one failure domain, named by a label so the
    # scheduler's default spread over failure domains has a domain to count.
    labels."ultracloud.io/power" = "power-d";
    failureDomainLabel = "ultracloud.io/power";
    autoCommission = true;
    autoInstall = true;
    expectedNodes = 3;
    description = "Any OptiPlex 7050/7060/7070 with an SSD that is not a fixed node becomes worker-1, worker-2, ... and installs unattended after a USB boot.";
  };

  nodes = {
    cp-1 = {
      class = "control-plane"; pool = "control"; failureDomain = "power-a";
      mac = "d8:9e:f3:3a:61:0b"; address = "10.44.0.11";
      autoCommission = true; autoInstall = true;
      description = "Desk 1, left power strip.";
    };
    cp-2 = {
      class = "control-plane"; pool = "control"; failureDomain = "power-b";
      mac = "d8:9e:f3:3a:6c:27"; address = "10.44.0.12";
      autoCommission = true; autoInstall = true;
      description = "Desk 2, right power strip.";
    };
    cp-3 = {
      class = "control-plane"; pool = "control"; failureDomain = "power-c";
      mac = "d8:9e:f3:41:02:9e"; address = "10.44.0.13";
      autoCommission = true; autoInstall = true;
      description = "Shelf, UPS-backed outlet.";
    };
  };

  hostDeployments = {
    # The seeds one at a time, so two of three always serve.
    control-plane-os = {
      selector.classes = [ "control-plane" ];
      target = { flakeRef = flake; flakeAttr = "nixosConfigurations.{hostname}.config.system.build.toplevel"; };
      maxUnavailable = 1;
      healthCheck = {
        http = { url = "http://127.0.0.1:7000/healthz"; timeout = "5s"; };
        interval = "2s";
        retries = 5;
      };
      rollbackPolicy = { activationTimeout = "240s"; confirmTimeout = "60s"; };
    };
    # Workers drain their placements first, one at a time.
    workers-os = {
      selector.pools = [ "workers" ];
      target = { flakeRef = flake; flakeAttr = "nixosConfigurations.worker.config.system.build.toplevel"; };
      maxUnavailable = 1;
      drain = true;
      drainTimeout = "5m";
    };
  };

  servicePolicies = {
    node-exporter = {
      replicas = 3;
      selector.classes = [ "worker" ];
      resources = { cpuMillis = 100; memoryBytes = 64 * units.MiB; };
      template = {
        command = [ "/run/current-system/sw/bin/node_exporter" "--web.listen-address=:9100" ];
        healthCheck = { http.url = "http://127.0.0.1:9100/metrics"; interval = "10s"; timeout = "2s"; };
        restartPolicy = "always";
      };
    };
    echo-api = {
      replicas = 2;
      selector.pools = [ "workers" ];
      resources = { cpuMillis = 250; memoryBytes = 128 * units.MiB; };
      template = {
        command = [ "/run/current-system/sw/bin/socat" "TCP-LISTEN:8080,fork,reuseaddr" "EXEC:/run/current-system/sw/bin/cat" ];
        env.ECHO_MODE = "plain";
        healthCheck = { tcp.port = 8080; initialDelay = "2s"; };
        restartPolicy = "on-failure";
        restartBackoff = { initialDelay = "1s"; maxDelay = "30s"; };
        stopGracePeriod = "10s";
      };
    };
  };
}
