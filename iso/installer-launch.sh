#!/usr/bin/env bash
# Starts the generic installer with this boot's deployer address and join token. Nothing is baked
# into the image: the values come from the kernel command line (ultracloud.deployer=host:port,
# ultracloud.join_token_file=/path or ultracloud.join_token=…) or from ULTRACLOUD_DEPLOYER,
# ULTRACLOUD_JOIN_TOKEN_FILE / ULTRACLOUD_JOIN_TOKEN lines in /iso/ultracloud/installer.env on the
# stick. The command line wins, so one stick serves many sites by editing the boot entry. An
# inline token is written to a 0600 file so it never shows up in the process list.
# Usage: installer-launch.sh <installer command…>   (it appends --deployer and --join-token-file)
set -euo pipefail

cmdline_file=${ULTRACLOUD_CMDLINE_FILE:-/proc/cmdline}
stick_env=${ULTRACLOUD_STICK_ENV:-/iso/ultracloud/installer.env}
runtime_dir=${ULTRACLOUD_RUNTIME_DIR:-/run/ultracloud}

deployer='' token='' token_file=''

if [[ -r $stick_env ]]; then
  while IFS='=' read -r key value || [[ -n $key ]]; do
    value=${value%$'\r'}
    value=${value#\"} value=${value%\"}
    case $key in
      ULTRACLOUD_DEPLOYER) deployer=$value ;;
      ULTRACLOUD_JOIN_TOKEN) token=$value ;;
      ULTRACLOUD_JOIN_TOKEN_FILE) token_file=$value ;;
    esac
  done <"$stick_env"
  # Within one source an explicit file beats an inline token.
  [[ -n $token_file ]] && token=''
fi

set -f # kernel arguments are words, not globs
for word in $(<"$cmdline_file"); do
  case $word in
    ultracloud.deployer=*) deployer=${word#*=} ;;
    ultracloud.join_token=*) token=${word#*=} token_file='' ;;
    ultracloud.join_token_file=*) token_file=${word#*=} token='' ;;
  esac
done
set +f

if [[ -z $deployer ]]; then
  echo "ultracloud-installer: no deployer address: add ultracloud.deployer=host:port to the kernel command line or ULTRACLOUD_DEPLOYER=host:port to $stick_env" >&2
  exit 64
fi
if [[ -n $token ]]; then
  mkdir -p -m 0700 "$runtime_dir"
  token_file=$runtime_dir/join-token
  (umask 077 && printf '%s' "$token" >"$token_file")
fi
if [[ -z $token_file ]]; then
  echo "ultracloud-installer: no join token: add ultracloud.join_token_file=/path (or ultracloud.join_token=…) to the kernel command line or ULTRACLOUD_JOIN_TOKEN_FILE to $stick_env" >&2
  exit 64
fi

exec "$@" --deployer "$deployer" --join-token-file "$token_file"
