/** fw_env.config parsing: the tools' number syntax, defaults, single vs redundant, errors naming the line. */
import t from 'tap';
import { rejectsCode } from '../../helpers.ts';
import { formatFwEnvConfig, parseFwEnvConfig } from '../../../src/bootcount/fw-env-config.ts';

t.test('one line: single copy, defaults for sector size and count', async (t) => {
  const c = parseFwEnvConfig('# comment\n\n/boot/uboot.env 0x0 0x4000\n');
  t.equal(c.redundant, false);
  t.equal(c.envSizeBytes, 0x4000);
  t.same(c.devices, [{ path: '/boot/uboot.env', offset: 0, envSizeBytes: 0x4000, sectorSizeBytes: 0x4000, sectors: 1, line: 3 }]);
});

t.test('two lines: redundant; sector size and count given', async (t) => {
  const c = parseFwEnvConfig('/dev/mmcblk0 0x3f8000 0x4000 0x2000\n/dev/mmcblk0\t0x3fc000  0x4000 0x2000 4 # second copy\n');
  t.equal(c.redundant, true);
  t.equal(c.devices[0].sectors, 2, 'enough sectors to hold the env');
  t.equal(c.devices[1].sectors, 4, 'given count (hex)');
  t.equal(c.devices[1].offset, 0x3fc000);
  t.equal(c.devices[1].line, 2);
});

t.test("numbers as the tools read them: offset in C syntax, sizes always hex", async (t) => {
  const c = parseFwEnvConfig('f 16384 4000 1000 a\n');
  t.equal(c.devices[0].offset, 16384, 'decimal offset');
  t.equal(c.devices[0].envSizeBytes, 0x4000, "size '4000' is hex, as sscanf %zx reads it");
  t.equal(c.devices[0].sectorSizeBytes, 0x1000);
  t.equal(c.devices[0].sectors, 10);
  t.equal(parseFwEnvConfig('f 010 0x40\n').devices[0].offset, 8, 'leading 0: octal');
  t.equal(parseFwEnvConfig('f 0X10 0X40\n').devices[0].offset, 16, 'upper-case 0X');
  t.equal(parseFwEnvConfig('f 0 40 0 0 1\n').devices[0].sectors, 1, 'a 6th field (libubootenv disable-lock) is accepted, 0 sectors means the default');
});

t.test('format/parse round trip', async (t) => {
  const c = parseFwEnvConfig('/a 0x0 0x4000\n/b 0x8000 0x4000 0x4000 1\n');
  t.same(parseFwEnvConfig(formatFwEnvConfig(c)).devices.map(({ line, ...d }) => d), c.devices.map(({ line, ...d }) => d));
});

t.test('errors name the line', async (t) => {
  const cases: [string, RegExp, number | undefined][] = [
    ['/a 0x0\n', /line 1: expected DEVICE OFFSET ENVSIZE/, 1],
    ['# c\n/a zero 0x4000\n', /line 2: offset 'zero'/, 2],
    ['/a 0 0x4g00\n', /line 1: env size '0x4g00' is not hexadecimal/, 1],
    ['/a -4 0x4000\n', /negative offset/, 1],
    ['/a 0 0x4\n', /out of range/, 1],
    ['/a 0 0x4000 0x1000 2\n', /2 sector\(s\) of 0x1000 bytes cannot hold/, 1],
    ['/a 0 0x4000\n/a 0x4000 0x2000\n', /line 2: the redundant copy's size 0x2000 differs/, 2],
    ['/a 0 0x4000\n/a 0x2000 0x4000\n', /line 2: .*overlaps/, 2],
    ['/a 0 0x40\n/b 0 0x40\n/c 0 0x40\n', /line 3: a third environment/, 3],
    ['/dev/ubi0_1 0 0x4000\n', /UBI volume/, 1],
    ['/a 0 1 2 3 4 5\n', /too many fields/, 1],
  ];
  for (const [text, message, line] of cases) {
    const err = await rejectsCode(t, () => parseFwEnvConfig(text, 'cfg'), 'INVALID_INPUT', JSON.stringify(text));
    t.match(err.message, message, JSON.stringify(text));
    t.match(err.message, /^cfg/, 'names the file');
    t.equal(err.data.line, line, `${JSON.stringify(text)}: data.line`);
  }
  await rejectsCode(t, () => parseFwEnvConfig('# only comments\n\n', 'cfg'), 'INVALID_INPUT', 'comments only', { message: /no environment line/ });
});
