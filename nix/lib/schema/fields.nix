# The authoring schema: every object, field, type and default an operator can write in a
# cluster file. docs/nix-schema.md documents each field; a test keeps the two in step.
# Field names follow the proto's lowerCamelCase JSON names except where Nix reads better
# (`class` for node_class, `classes` for node_classes); enums are short lowercase names that
# enums.nix maps to the proto's full value names.
types:
let
  inherit (types) submodule attrsOf listOf nullOr string bool int32 uint32 uint64 bytes partitionSize
    duration mac enum;
  enums = import ./enums.nix;

  f = type: default: { inherit type default; };
  req = type: { inherit type; required = true; };
  opt = type: { type = nullOr type; default = null; };

  labels = attrsOf string;
  strings = listOf string;

  # maxUnavailable: a node count (3) or a percentage of the selected nodes ("25%").
  maxUnavailable = {
    name = "a node count or a percentage";
    normalise = path: v:
      let m = if builtins.isString v then builtins.match "([0-9]+)%" v else null;
      in if builtins.isInt v then { value = { count = v; }; errors = [ ]; }
         else if m != null then { value = { percent = builtins.fromJSON (builtins.head m); }; errors = [ ]; }
         else { value = null; errors = [ "${path}: expected a node count (1) or a percentage (\"25%\"), got ${types.describe v}" ]; };
  };

  # Ironic root-device hints; checks.nix parses each expression as the deployer's resolver does.
  rootDeviceHints = submodule {
    name = f string "";
    byPath = f string "";
    wwn = f string "";
    wwnWithExtension = f string "";
    wwnVendorExtension = f string "";
    serial = f string "";
    model = f string "";
    vendor = f string "";
    # GiB expression (">= 200", "<range-in> [200 600]"); an integer N means "== N".
    size = f (types.leaf {
      name = "a size expression";
      check = v: builtins.isString v || (builtins.isInt v && v > 0);
      coerce = v: if builtins.isInt v then toString v else v;
      explain = v: "expected a GiB expression such as \">= 200\" or a positive integer, got ${types.describe v}";
    }) "";
    rotational = opt bool;
    hctl = f string "";
  };
in
rec {
  inherit enums;

  partition = submodule {
    name = req string;
    size = f partitionSize 0;
    # null: "root" when mounted at "/", otherwise "linux".
    type = opt (enum enums.partitionType);
    filesystem = f string "";
    mountpoint = f string "";
    mountOptions = f strings [ ];
    formatOptions = f strings [ ];
    label = f string "";
  };

  cluster = submodule {
    name = req string;
    domain = req string;
    deployerAddress = f string "";
    # null: same as deployerAddress (`ultracloud up` serves all three on one port).
    hostControllerAddress = opt string;
    fleetSchedulerAddress = opt string;
    rescueSshAuthorizedKeys = f strings [ ];
  };

  network = submodule {
    cidr = req string;
    gateway = f string "";
    dnsServers = f strings [ ];
    searchDomains = f strings [ ];
    ntpServers = f strings [ ];
    addressMode = f (enum enums.addressMode) "dhcp";
    addressPool = opt (submodule { start = req string; end = req string; });
    mtu = f uint32 0;
    description = f string "";
  };

  installProfile = submodule {
    flakeRef = req string;
    flakeAttr = f string "nixosConfigurations.{hostname}";
    diskPolicy = req string;
    network = req string;
    bundleUrl = f string "";
    bundleSha256 = f string "";
    description = f string "";
  };

  diskPolicy = submodule {
    rootDeviceHints = f rootDeviceHints { };
    layout = req (submodule {
      partitionTable = f (enum enums.partitionTableType) "gpt";
      partitions = req (listOf partition);
    });
    wipePolicy = f (enum enums.wipePolicy) "metadata";
    description = f string "";
  };

  nodeClass = submodule {
    installProfile = req string;
    defaultLabels = f labels { };
    runNodeAgent = f bool false;
    runtimeCapabilities = f strings [ ];
    minimumHardware = opt (submodule {
      cpuCores = f uint32 0;
      memoryBytes = f bytes 0;
      diskCount = f uint32 0;
      diskSizeBytes = f bytes 0;
      nicCount = f uint32 0;
      nicSpeedMbps = f uint32 0;
    });
    description = f string "";
  };

  pool = submodule {
    labels = f labels { };
    description = f string "";
  };

  machineSelector = submodule {
    machineIds = f strings [ ];
    macAddresses = f (listOf mac) [ ];
    macPatterns = f strings [ ];
    vendors = f strings [ ];
    products = f strings [ ];
    serialNumbers = f strings [ ];
    disks = opt (submodule {
      minCount = f uint32 0;
      minSizeBytes = f bytes 0;
      rotational = opt bool;
      model = f string "";
    });
    nics = opt (submodule {
      minCount = f uint32 0;
      minSpeedMbps = f uint32 0;
      driver = f string "";
    });
    minCpuCores = f uint32 0;
    minMemoryBytes = f bytes 0;
  };

  enrollmentRule = submodule {
    priority = f int32 100;
    selector = f machineSelector { };
    class = req string;
    pool = req string;
    labels = f labels { };
    installProfile = f string "";
    nodeIdTemplate = f string "";
    hostnameTemplate = f string "";
    failureDomainLabel = f string "";
    autoCommission = f bool false;
    autoInstall = f bool false;
    # Nix only: how many machines the operator expects the rule to enrol. Sizes capacity checks
    # of hostDeployments and servicePolicies and the test topology; null = unknown.
    expectedNodes = opt uint32;
    description = f string "";
  };

  staticAddress = submodule {
    macAddress = req mac;
    network = req string;
    address = req string;
  };

  node = submodule {
    # null: the node id (the attribute name).
    hostname = opt string;
    class = req string;
    pool = req string;
    labels = f labels { };
    failureDomain = f string "";
    installProfile = f string "";
    # Shorthands for the common one-NIC node: `mac` is added to match.macAddresses and, with
    # `address`, becomes a static address on `network` (default: the install profile's network).
    mac = opt mac;
    address = opt string;
    network = opt string;
    match = f (submodule {
      macAddresses = f (listOf mac) [ ];
      systemUuid = f string "";
      serialNumber = f string "";
    }) { };
    staticAddresses = f (listOf staticAddress) [ ];
    autoCommission = f bool false;
    autoInstall = f bool false;
    description = f string "";
  };

  commandHealthCheck = submodule {
    argv = req strings;
    env = f labels { };
    timeout = opt duration;
  };

  hostDeployment = submodule {
    selector = req (submodule {
      nodeIds = f strings [ ];
      classes = f strings [ ];
      pools = f strings [ ];
      matchLabels = f labels { };
      allNodes = f bool false;
    });
    target = req (submodule {
      systemPath = f string "";
      nodeSystemPaths = f (attrsOf string) { };
      flakeRef = f string "";
      flakeAttr = f string "";
    });
    activationStrategy = f (enum enums.activationStrategy) "switch";
    healthCheck = opt (submodule {
      command = opt commandHealthCheck;
      http = opt (submodule {
        url = req string;
        expectedStatus = f uint32 0;
        timeout = opt duration;
      });
      interval = opt duration;
      retries = opt uint32;
    });
    rollbackPolicy = opt (submodule {
      activationTimeout = opt duration;
      confirmTimeout = opt duration;
      autoRollback = opt bool;
      rebootTimeout = opt duration;
    });
    maxUnavailable = f maxUnavailable 1;
    failureBudget = f uint32 0;
    drain = f bool false;
    drainTimeout = opt duration;
    paused = f bool false;
    rolloutOrder = opt (submodule {
      byFailureDomain = f (enum enums.failureDomainOrdering) "sequential";
      failureDomains = f strings [ ];
    });
    substituters = f strings [ ];
  };

  servicePolicy = submodule {
    replicas = req uint32;
    selector = f (submodule {
      classes = f strings [ ];
      pools = f strings [ ];
      matchLabels = f labels { };
      nodeIds = f strings [ ];
    }) { };
    # The proto's "absent: none" becomes an explicit spread over failure domains by default, so
    # replicas do not pile into one power strip unless the author says so (`spread = [ ]`).
    spread = f (listOf (submodule {
      key = f string "failure_domain";
      maxSkew = f uint32 1;
    })) [ { key = "failure_domain"; maxSkew = 1; } ];
    resources = opt (submodule {
      cpuMillis = f uint32 0;
      memoryBytes = f bytes 0;
    });
    template = req (submodule {
      command = req strings;
      env = f labels { };
      workingDir = f string "";
      healthCheck = opt (submodule {
        command = opt (submodule { argv = req strings; env = f labels { }; });
        http = opt (submodule { url = req string; expectedStatus = f uint32 0; });
        tcp = opt (submodule { host = f string ""; port = req uint32; });
        interval = opt duration;
        timeout = opt duration;
        failureThreshold = f uint32 0;
        initialDelay = opt duration;
      });
      restartPolicy = f (enum enums.restartPolicy) "always";
      restartBackoff = opt (submodule {
        initialDelay = opt duration;
        maxDelay = opt duration;
      });
      stopGracePeriod = opt duration;
    });
  };

  clusterFile = submodule {
    cluster = req cluster;
    networks = f (attrsOf network) { };
    installProfiles = f (attrsOf installProfile) { };
    diskPolicies = f (attrsOf diskPolicy) { };
    nodeClasses = f (attrsOf nodeClass) { };
    pools = f (attrsOf pool) { };
    enrollmentRules = f (attrsOf enrollmentRule) { };
    nodes = f (attrsOf node) { };
    hostDeployments = f (attrsOf hostDeployment) { };
    servicePolicies = f (attrsOf servicePolicy) { };
  };
}
