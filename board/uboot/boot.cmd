# larch A/B boot script for U-Boot (hush).
#   mkimage -A arm64 -O linux -T script -C none -n larch -d boot.cmd boot.scr
# It does exactly what bootloaderChoose() in src/bootcount/state.ts does; board/boot-cases.json is the
# contract, run against this script in QEMU by test/integration/board-scripts.test.ts. The variables
# are described in docs/boot.md.
#
# Board settings (U-Boot's default env, or setenv before running the script):
#   larch_env       fat (default): the boot state lives in ${larch_env_file} on the boot partition and
#                   is read with load + env import -c, written with env export -c + fatwrite;
#                   native: U-Boot's own env storage (already loaded at power-on), written with saveenv
#   larch_env_file  uboot.env          larch_env_size  0x4000 (the size in fw_env.config)
#   larch_env_keep  names of other variables the env file keeps when this script rewrites it
#   larch_kernel    Image    larch_initrd  initrd    larch_fdt  dtb    (files under /A and /B)
#   larch_boot      booti (arm64); bootz for 32-bit ARM
#   larch_env_addr  scratch RAM for the env file; default ${kernel_addr_r} (free until the kernel loads)
#   larch_bootargs  kernel arguments; the script appends larch.slot=A|B
#   larch_dryrun    1: print the choice and save the env as usual, but load no kernel (tests)
# distro_bootcmd sets devtype, devnum and distro_bootpart; without it, mmc 0:1.

if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi
if test -z "${distro_bootpart}"; then setenv distro_bootpart 1; fi
setenv larch_part ${devnum}:${distro_bootpart}
if test -z "${larch_env}"; then setenv larch_env fat; fi
if test -z "${larch_env_file}"; then setenv larch_env_file uboot.env; fi
if test -z "${larch_env_size}"; then setenv larch_env_size 0x4000; fi
if test -z "${larch_kernel}"; then setenv larch_kernel Image; fi
if test -z "${larch_initrd}"; then setenv larch_initrd initrd; fi
if test -z "${larch_fdt}"; then setenv larch_fdt dtb; fi
if test -z "${larch_boot}"; then setenv larch_boot booti; fi
if test -z "${larch_env_addr}"; then setenv larch_env_addr ${kernel_addr_r}; fi
setenv larch_vars "BOOT_ORDER BOOT_A_GOOD BOOT_A_LEFT BOOT_B_GOOD BOOT_B_LEFT BOOT_LKG BOOT_RESCUE"

# 1. Load. A missing file or a bad CRC leaves larch's variables unset: the safe default below.
if test "${larch_env}" = fat; then
  env delete -f ${larch_vars}
  if load ${devtype} ${larch_part} ${larch_env_addr} ${larch_env_file}; then
    if env import -c ${larch_env_addr} ${filesize}; then
      echo "larch: boot state read from ${larch_env_file}"
    else
      echo "larch: ${larch_env_file} failed its CRC check; using the safe default"
    fi
  else
    echo "larch: no ${larch_env_file}; using the safe default"
  fi
fi

# 2. Decode, tolerantly: only exact values count (see decode() in state.ts).
#    U-Boot's hush rescans quotes inside an expanded value: a value holding ' can make `test` succeed
#    (measured: test "${X}" = 9 is true for X=a'b). So first replace every character that no valid
#    value uses (valid ones use only 0-9, A, B and space) by _: valid values stay as they are and
#    invalid ones stay invalid. setexpr reads the value itself, unexpanded. (SLRE has no ranges.)
for v in ${larch_vars}; do
  if env exists ${v}; then setexpr ${v} gsub "[^0123456789AB ]" _; fi
done
if test "${BOOT_LKG}" = B; then setenv larch_lkg B; else setenv larch_lkg A; fi
if test "${BOOT_ORDER}" = "A B"; then setenv larch_order "A B"
elif test "${BOOT_ORDER}" = "B A"; then setenv larch_order "B A"
elif test "${larch_lkg}" = B; then setenv larch_order "B A"
else setenv larch_order "A B"; fi

if test "${BOOT_A_GOOD}" = 1; then setenv larch_a_good 1
elif test "${BOOT_A_GOOD}" = 0; then setenv larch_a_good 0
elif test "${larch_lkg}" = A; then setenv larch_a_good 1
else setenv larch_a_good 0; fi
setenv larch_a_left 0
if test "${larch_a_good}" = 0; then
  for n in 1 2 3 4 5 6 7 8 9; do
    if test "${BOOT_A_LEFT}" = "${n}"; then setenv larch_a_left ${n}; fi
  done
fi

if test "${BOOT_B_GOOD}" = 1; then setenv larch_b_good 1
elif test "${BOOT_B_GOOD}" = 0; then setenv larch_b_good 0
elif test "${larch_lkg}" = B; then setenv larch_b_good 1
else setenv larch_b_good 0; fi
setenv larch_b_left 0
if test "${larch_b_good}" = 0; then
  for n in 1 2 3 4 5 6 7 8 9; do
    if test "${BOOT_B_LEFT}" = "${n}"; then setenv larch_b_left ${n}; fi
  done
fi

# 3. Choose: the first slot in order that is good (no write: rauc#490) or has a try left (spend it).
#    Tries never exceed 9, so setexpr's hex result is the same as decimal.
setenv larch_slot
setenv larch_rescue 0
setenv larch_write 0
for s in ${larch_order}; do
  if test -z "${larch_slot}"; then
    if test "${s}" = A; then
      if test "${larch_a_good}" = 1; then setenv larch_slot A
      elif test "${larch_a_left}" != 0; then setenv larch_slot A; setexpr larch_a_left ${larch_a_left} - 1; setenv larch_write 1; fi
    else
      if test "${larch_b_good}" = 1; then setenv larch_slot B
      elif test "${larch_b_left}" != 0; then setenv larch_slot B; setexpr larch_b_left ${larch_b_left} - 1; setenv larch_write 1; fi
    fi
  fi
done

# Neither slot is bootable: the last known good slot anyway, flagged once, never a counter reset
# (greenboot#26: resetting would reboot forever between two bad slots).
if test -z "${larch_slot}"; then
  setenv larch_slot ${larch_lkg}
  setenv larch_rescue 1
  if test "${BOOT_RESCUE}" != 1; then setenv larch_write 1; fi
fi

# 4. Save all of larch's variables in one write.
setenv larch_saved 1
if test "${larch_write}" = 1; then
  setenv BOOT_ORDER "${larch_order}"
  setenv BOOT_A_GOOD ${larch_a_good}
  setenv BOOT_A_LEFT ${larch_a_left}
  setenv BOOT_B_GOOD ${larch_b_good}
  setenv BOOT_B_LEFT ${larch_b_left}
  setenv BOOT_LKG ${larch_lkg}
  setenv BOOT_RESCUE ${larch_rescue}
  if test "${larch_env}" = native; then
    saveenv || setenv larch_saved 0
  else
    setenv larch_saved 0
    if env export -c -s ${larch_env_size} ${larch_env_addr} ${larch_vars} larch_env_keep ${larch_env_keep}; then
      fatwrite ${devtype} ${larch_part} ${larch_env_addr} ${larch_env_file} ${larch_env_size} && setenv larch_saved 1
    fi
  fi
fi
# A try that was not recorded could let a bad slot boot forever: boot the last known good instead.
if test "${larch_saved}" = 0; then
  echo "larch: could not save the boot state; booting ${larch_lkg} without spending a try"
  setenv larch_slot ${larch_lkg}
  setenv larch_write 0
fi
echo "larch: slot=${larch_slot} rescue=${larch_rescue} wrote=${larch_write}"

# 5. Boot.
if test "${larch_dryrun}" = 1; then
  echo "larch: dry run, not booting"
else
  setenv bootargs "${larch_bootargs} larch.slot=${larch_slot}"
  if load ${devtype} ${larch_part} ${kernel_addr_r} ${larch_slot}/${larch_kernel}; then
    setenv larch_initrd_arg -
    if load ${devtype} ${larch_part} ${ramdisk_addr_r} ${larch_slot}/${larch_initrd}; then setenv larch_initrd_arg ${ramdisk_addr_r}:${filesize}; fi
    # No fdt_addr_r (QEMU's U-Boot has none): the device tree U-Boot itself runs on.
    setenv larch_fdt_addr ${fdtcontroladdr}
    if test -n "${fdt_addr_r}"; then
      if load ${devtype} ${larch_part} ${fdt_addr_r} ${larch_slot}/${larch_fdt}; then setenv larch_fdt_addr ${fdt_addr_r}; fi
    fi
    ${larch_boot} ${kernel_addr_r} ${larch_initrd_arg} ${larch_fdt_addr}
  fi
  echo "larch: slot ${larch_slot} did not boot"
  # A spent try makes a reset safe (the count goes down); a good slot would loop, so stop here instead.
  if test "${larch_write}" = 1; then reset; fi
  echo "larch: staying at the prompt"
fi
