# Short Nix names of the proto enums and the full proto value names they stand for.
{
  addressMode = { dhcp = "ADDRESS_MODE_DHCP"; static = "ADDRESS_MODE_STATIC"; };
  wipePolicy = {
    metadata = "WIPE_POLICY_METADATA";
    discard = "WIPE_POLICY_DISCARD";
    zero = "WIPE_POLICY_ZERO";
    require-empty = "WIPE_POLICY_REQUIRE_EMPTY";
  };
  partitionTableType = { gpt = "PARTITION_TABLE_TYPE_GPT"; msdos = "PARTITION_TABLE_TYPE_MSDOS"; };
  partitionType = {
    esp = "PARTITION_TYPE_ESP";
    bios-boot = "PARTITION_TYPE_BIOS_BOOT";
    swap = "PARTITION_TYPE_SWAP";
    root = "PARTITION_TYPE_ROOT";
    linux = "PARTITION_TYPE_LINUX";
  };
  activationStrategy = {
    switch = "ACTIVATION_STRATEGY_SWITCH";
    boot = "ACTIVATION_STRATEGY_BOOT";
    test = "ACTIVATION_STRATEGY_TEST";
  };
  failureDomainOrdering = {
    sequential = "FAILURE_DOMAIN_ORDERING_SEQUENTIAL";
    interleaved = "FAILURE_DOMAIN_ORDERING_INTERLEAVED";
    none = "FAILURE_DOMAIN_ORDERING_NONE";
  };
  restartPolicy = {
    always = "RESTART_POLICY_ALWAYS";
    on-failure = "RESTART_POLICY_ON_FAILURE";
    never = "RESTART_POLICY_NEVER";
  };
}
