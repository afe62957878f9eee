# Renders a disk policy's layout as a disko disk (github.com/nix-community/disko): the same
# partitions, types, filesystems, labels and mount options the installer creates from the
# InstallPlan. Only the device differs: root-device hints are resolved against real disks at
# install time, so unless the policy pins one /dev/disk/by-id path the device is the
# placeholder below, which the installer replaces with InstallPlan.disk.byIdPath. The installed
# system does not depend on it: disko mounts partitions by their GPT label
# (/dev/disk/by-partlabel/disk-root-<name>), not by the disk's path.
let
  inherit (builtins) elemAt genList length listToAttrs match div foldl';

  mib = 1024 * 1024;
  placeholder = "@ULTRACLOUD_ROOT_DISK@";

  gptType = { esp = "EF00"; bios-boot = "EF02"; swap = "8200"; root = "8300"; linux = "8300"; };
  labelFlag = { vfat = "-n"; ext4 = "-L"; xfs = "-L"; btrfs = "-L"; swap = "-L"; };

  content = p:
    let extraArgs = p.formatOptions ++ (if p.label == "" then [ ] else [ labelFlag.${p.filesystem} p.label ]);
        extra = if extraArgs == [ ] then { } else { inherit extraArgs; };
    in if p.filesystem == "" then null
       else if p.filesystem == "swap" then { type = "swap"; } // extra
       else { type = "filesystem"; format = p.filesystem; }
         // (if p.mountpoint == "" then { } else { inherit (p) mountpoint; })
         // (if p.mountOptions == [ ] then { } else { inherit (p) mountOptions; })
         // extra;

  withContent = p: attrs: let c = content p; in attrs // (if c == null then { } else { content = c; });

  gpt = parts: {
    type = "gpt";
    partitions = listToAttrs (genList (i: let p = elemAt parts i; in {
      name = p.name;
      # disko creates partitions in priority order; this keeps the policy's on-disk order.
      value = withContent p {
        priority = i + 1;
        size = if p.size == 0 then "100%" else "${toString (div p.size mib)}M";
        type = gptType.${p.type};
      };
    }) (length parts));
  };

  # MSDOS tables use disko's `table` type, which wants explicit start/end offsets; the first
  # partition starts at 1 MiB like parted's default alignment.
  msdos = parts: {
    type = "table";
    format = "msdos";
    partitions = genList (i:
      let
        p = elemAt parts i;
        start = 1 + foldl' (a: j: a + div (elemAt parts j).size mib) 0 (genList (j: j) i);
      in withContent p {
        inherit (p) name;
        part-type = "primary";
        start = "${toString start}MiB";
        end = if p.size == 0 then "100%" else "${toString (start + div p.size mib)}MiB";
        # The BIOS boots the partition holding /boot, else the root filesystem.
        bootable = p.mountpoint == (if builtins.any (q: q.mountpoint == "/boot") parts then "/boot" else "/");
      }) (length parts);
  };
in
{
  inherit placeholder;

  # The by-id path the policy itself pins (a bare `name` hint under /dev/disk/by-id/), or null.
  pinnedDevice = hints:
    if match "/dev/disk/by-id/[^[:space:]]+" hints.name != null then hints.name else null;

  disk = device: layout: {
    type = "disk";
    inherit device;
    content = if layout.partitionTable == "msdos" then msdos layout.partitions else gpt layout.partitions;
  };
}
