# larch A/B boot script for U-Boot (hush).
#   mkimage -A arm64 -O linux -T script -C none -n larch -d boot.cmd boot.scr
# It does exactly what bootloaderChoose() in src/bootcount/state.ts does; board/boot-cases.json is the
# contract, run against this script in QEMU by test/integration/board-scripts.test.ts. The variables
# are described in docs/boot.md.
#
# Board settings (U-Boot's default env, or setenv before running the script):
#   larch_env       fat (default): the boot state lives in files on the boot partition, read with
#                   load + env import -c, written with env export -c + fatwrite;
#                   native: U-Boot's own env storage (already loaded at power-on), written with saveenv
#   larch_env_file  uboot.env          larch_env_file2  uboot-redund.env
#                   A redundant env (CONFIG_SYS_REDUNDAND_ENVIRONMENT's layout, one copy per file:
#                   crc32, flags byte, data): the valid copy with the newer flags is read, and a write
#                   goes to the other file with flags + 1, so a torn write leaves the copy in use.
#                   With no ${larch_env_file2}, ${larch_env_file} may also be a single-copy env (the
#                   former layout), written back as one.
#   larch_env_size  0x4000 (the size of one copy, as in fw_env.config)
#   larch_lkg_marker larch-lkg-B: when this file exists on the boot partition, B is the last known good
#                   slot wherever BOOT_LKG is missing or garbage (e.g. no valid env copy at all)
#   larch_env_keep  names of other variables the env file keeps when this script rewrites it
#   larch_kernel    Image    larch_initrd  initrd    larch_fdt  dtb    (files under /A and /B)
#   larch_boot      booti (arm64); bootz for 32-bit ARM
#   larch_env_addr  scratch RAM for the env file; default ${kernel_addr_r} (free until the kernel loads)
#   larch_bootargs  kernel arguments of a slot without its own file (below); the script appends
#                   larch.slot=A|B
#   larch_dryrun    1: print the choice and the kernel arguments and save the env as usual, but load
#                   no kernel (tests)
# A slot's kernel arguments: X/larch.env beside X's kernel (src/bootcount/slot-kargs.ts; docs/boot.md
# "Kernel arguments per slot"), a single-copy env of 0x1000 bytes holding bootargs, ending with
# larch.slot=X. Without it, ${larch_bootargs} larch.slot=X (a slot written by an older agent). A file
# that is short, fails its CRC, has no bootargs or names another slot: the slot does not boot.
# distro_bootcmd sets devtype, devnum and distro_bootpart; without it, mmc 0:1.

if test -z "${devtype}"; then setenv devtype mmc; fi
if test -z "${devnum}"; then setenv devnum 0; fi
if test -z "${distro_bootpart}"; then setenv distro_bootpart 1; fi
setenv larch_part ${devnum}:${distro_bootpart}
if test -z "${larch_env}"; then setenv larch_env fat; fi
if test -z "${larch_env_file}"; then setenv larch_env_file uboot.env; fi
if test -z "${larch_env_file2}"; then setenv larch_env_file2 uboot-redund.env; fi
if test -z "${larch_lkg_marker}"; then setenv larch_lkg_marker larch-lkg-B; fi
if test -z "${larch_env_size}"; then setenv larch_env_size 0x4000; fi
if test -z "${larch_kernel}"; then setenv larch_kernel Image; fi
if test -z "${larch_initrd}"; then setenv larch_initrd initrd; fi
if test -z "${larch_fdt}"; then setenv larch_fdt dtb; fi
if test -z "${larch_boot}"; then setenv larch_boot booti; fi
if test -z "${larch_env_addr}"; then setenv larch_env_addr ${kernel_addr_r}; fi
setenv larch_vars "BOOT_ORDER BOOT_A_GOOD BOOT_A_LEFT BOOT_B_GOOD BOOT_B_LEFT BOOT_LKG BOOT_RESCUE BOOT_RELEASES"

# 1. Load. No valid copy (missing, torn, zeroed) leaves larch's variables unset: the safe default.
#    A copy counts only when its file is whole (a short file would leave older bytes in RAM).
if test "${larch_env}" = fat; then
  env delete -f ${larch_vars}
  setexpr larch_addr1 ${larch_env_addr} + ${larch_env_size}
  setexpr larch_scratch ${larch_addr1} + ${larch_env_size}
  setexpr larch_size1 ${larch_env_size} - 1
  setenv larch_layout
  setenv larch_active
  setenv larch_flags 0
  setenv larch_got0 0
  setenv larch_got1 0
  setenv larch_f0 0
  setenv larch_f1 0
  if load ${devtype} ${larch_part} ${larch_env_addr} ${larch_env_file} ${larch_env_size}; then
    setexpr larch_t ${filesize} - ${larch_env_size}
    if test "${larch_t}" = 0; then setenv larch_got0 1; setexpr larch_t ${larch_env_addr} + 4; setexpr.b larch_f0 *${larch_t}; fi
  fi
  if load ${devtype} ${larch_part} ${larch_addr1} ${larch_env_file2} ${larch_env_size}; then
    setexpr larch_t ${filesize} - ${larch_env_size}
    if test "${larch_t}" = 0; then setenv larch_got1 1; setexpr larch_t ${larch_addr1} + 4; setexpr.b larch_f1 *${larch_t}; fi
  fi
  # The former single-copy file (CRC over everything after it), when there is no second file.
  if test "${larch_got0}${larch_got1}" = 10; then
    if env import -c ${larch_env_addr} ${larch_env_size}; then setenv larch_layout single; setenv larch_active 0; fi
  fi
  # Redundant copies: the newer flags first (greater wins, 0 beats ff, equal: copy 0), as U-Boot,
  # libubootenv and selectCopy() in src/bootcount/uboot-env.ts. setexpr is hex: f1 + ff - f0 is
  # 100 or more exactly when f1 > f0. A copy that fails its CRC changes nothing: then the other.
  setexpr larch_t ${larch_f1} + ff
  setexpr larch_t ${larch_t} - ${larch_f0}
  setexpr larch_t ${larch_t} / 100
  if test "${larch_f0}" = ff -a "${larch_f1}" = 0; then setenv larch_t 1; fi
  if test "${larch_f1}" = ff -a "${larch_f0}" = 0; then setenv larch_t 0; fi
  if test "${larch_t}" = 1; then setenv larch_copies "1 0"; else setenv larch_copies "0 1"; fi
  for c in ${larch_copies}; do
    if test -z "${larch_layout}"; then
      if test "${c}" = 0; then setenv larch_p ${larch_env_addr}; setenv larch_g ${larch_got0}; setenv larch_f ${larch_f0}
      else setenv larch_p ${larch_addr1}; setenv larch_g ${larch_got1}; setenv larch_f ${larch_f1}; fi
      if test "${larch_g}" = 1; then
        # env import -c reads [crc][data]: move the CRC over the flags byte, then import from +1.
        setexpr larch_p1 ${larch_p} + 1
        cp.b ${larch_p} ${larch_scratch} 4
        cp.b ${larch_scratch} ${larch_p1} 4
        if env import -c ${larch_p1} ${larch_size1}; then setenv larch_layout redundant; setenv larch_active ${c}; setenv larch_flags ${larch_f}; fi
      fi
    fi
  done
  if test -n "${larch_layout}"; then
    echo "larch: boot state read from copy ${larch_active} (${larch_layout})"
  else
    echo "larch: no valid copy of ${larch_env_file} / ${larch_env_file2}; using the safe default"
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
# The last known good slot: BOOT_LKG, else the marker file (written by larch only after an env
# write, so a torn env never reaches it), else A.
setenv larch_marker A
if test -e ${devtype} ${larch_part} ${larch_lkg_marker}; then setenv larch_marker B; fi
if test "${BOOT_LKG}" = B; then setenv larch_lkg B
elif test "${BOOT_LKG}" = A; then setenv larch_lkg A
else setenv larch_lkg ${larch_marker}; fi
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

# The release floor (release-gate.ts, docs/boot.md): BOOT_RELEASES is "FLOOR A B", and a slot
# whose release is below the floor is passed over. Only three numbers of 1 to 9 digits with no
# leading 0 count (test reads a leading 0 as octal and 0x as hex; nine digits fit a 32-bit long);
# anything else: no floor. setexpr sub fails on no match; \\d and \\1 reach SLRE as \d and \1.
setenv larch_floor
setenv larch_a_rel 0
setenv larch_b_rel 0
if test -n "${BOOT_RELEASES}"; then
  if setexpr larch_t sub "^(0|[123456789]\\d*) (0|[123456789]\\d*) (0|[123456789]\\d*)$" "\\1" "${BOOT_RELEASES}"; then
    setenv larch_floor ${larch_t}
    setexpr larch_a_rel sub "^(0|[123456789]\\d*) (0|[123456789]\\d*) (0|[123456789]\\d*)$" "\\2" "${BOOT_RELEASES}"
    setexpr larch_b_rel sub "^(0|[123456789]\\d*) (0|[123456789]\\d*) (0|[123456789]\\d*)$" "\\3" "${BOOT_RELEASES}"
    if setexpr larch_t sub "\\d\\d\\d\\d\\d\\d\\d\\d\\d\\d" x "${BOOT_RELEASES}"; then setenv larch_floor; fi
  fi
fi
setenv larch_a_floor_ok 1
setenv larch_b_floor_ok 1
if test -n "${larch_floor}"; then
  if test ${larch_a_rel} -lt ${larch_floor}; then setenv larch_a_floor_ok 0; echo "larch: slot A holds release ${larch_a_rel}, below the floor ${larch_floor}"; fi
  if test ${larch_b_rel} -lt ${larch_floor}; then setenv larch_b_floor_ok 0; echo "larch: slot B holds release ${larch_b_rel}, below the floor ${larch_floor}"; fi
fi

# 3. Choose: the first slot in order that is good (no write: rauc#490) or has a try left (spend it),
#    and not below the release floor. Tries never exceed 9, so setexpr's hex result is the same as decimal.
setenv larch_slot
setenv larch_rescue 0
setenv larch_write 0
for s in ${larch_order}; do
  if test -z "${larch_slot}"; then
    if test "${s}" = A -a "${larch_a_floor_ok}" = 1; then
      if test "${larch_a_good}" = 1; then setenv larch_slot A
      elif test "${larch_a_left}" != 0; then setenv larch_slot A; setexpr larch_a_left ${larch_a_left} - 1; setenv larch_write 1; fi
    elif test "${s}" = B -a "${larch_b_floor_ok}" = 1; then
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
  # A BOOT_RELEASES the script cannot read is dropped (dropUnreadable() in release-gate.ts).
  if test -z "${larch_floor}"; then setenv BOOT_RELEASES; fi
  if test "${larch_env}" = native; then
    saveenv || setenv larch_saved 0
  else
    setenv larch_saved 0
    if test "${larch_layout}" = single; then
      if env export -c -s ${larch_env_size} ${larch_env_addr} ${larch_vars} larch_env_keep ${larch_env_keep}; then
        fatwrite ${devtype} ${larch_part} ${larch_env_addr} ${larch_env_file} ${larch_env_size} && setenv larch_saved 1
      fi
    else
      # The copy not in use gets flags + 1; the one in use stays whole until this write is done.
      if test "${larch_active}" = 0; then setenv larch_wfile ${larch_env_file2}; else setenv larch_wfile ${larch_env_file}; fi
      setexpr larch_nf ${larch_flags} + 1
      setexpr larch_nf ${larch_nf} % 100
      setexpr larch_p1 ${larch_env_addr} + 1
      if env export -c -s ${larch_size1} ${larch_p1} ${larch_vars} larch_env_keep ${larch_env_keep}; then
        cp.b ${larch_p1} ${larch_scratch} 4
        cp.b ${larch_scratch} ${larch_env_addr} 4
        setexpr larch_t ${larch_env_addr} + 4
        mw.b ${larch_t} ${larch_nf}
        fatwrite ${devtype} ${larch_part} ${larch_env_addr} ${larch_wfile} ${larch_env_size} && setenv larch_saved 1
      fi
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

# 5. Boot. First the slot's kernel arguments, loaded where the env was (free until the kernel
#    loads): only bootargs is imported (env import names it), set as data, no hush expansion, so
#    quotes and $ in an argument reach the kernel as written. The checks are those of
#    decodeSlotKargs() in slot-kargs.ts: whole (0x1000 bytes; load reads at most one byte more),
#    CRC (-c), bootargs present and ending with this slot's larch.slot= (SLRE has no \. : [.]).
#    The regex matches the value with the same text, so setexpr leaves it as it was.
setenv larch_kargs_file ${larch_slot}/larch.env
setenv larch_kargs_ok 1
if test -e ${devtype} ${larch_part} ${larch_kargs_file}; then
  setenv larch_kargs_ok 0
  setenv bootargs
  if load ${devtype} ${larch_part} ${larch_env_addr} ${larch_kargs_file} 0x1001; then
    if test "${filesize}" = 1000; then
      if env import -c ${larch_env_addr} 0x1000 bootargs; then
        if env exists bootargs; then
          if setexpr bootargs sub " larch[.]slot=${larch_slot}$" " larch.slot=${larch_slot}"; then setenv larch_kargs_ok 1
          elif setexpr bootargs sub "^larch[.]slot=${larch_slot}$" "larch.slot=${larch_slot}"; then setenv larch_kargs_ok 1; fi
        fi
      fi
    fi
  fi
  if test "${larch_kargs_ok}" = 0; then
    setenv bootargs
    echo "larch: slot ${larch_slot}: its kernel arguments file ${larch_kargs_file} is damaged"
  fi
else
  setenv bootargs "${larch_bootargs} larch.slot=${larch_slot}"
fi
# printenv shows the value as it is (echo would go through hush).
if test "${larch_kargs_ok}" = 1; then echo -n "larch: "; printenv bootargs; fi
if test "${larch_dryrun}" = 1; then
  echo "larch: dry run, not booting"
else
  if test "${larch_kargs_ok}" = 1; then
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
  fi
  echo "larch: slot ${larch_slot} did not boot"
  # A spent try makes a reset safe (the count goes down); a good slot would loop, so stop here instead.
  if test "${larch_write}" = 1; then reset; fi
  echo "larch: staying at the prompt"
fi
