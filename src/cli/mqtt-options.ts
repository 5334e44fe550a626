/** The broker options of the commands that talk MQTT (announce, command, serve --mqtt, provision --mqtt-url). */
import { resolve } from 'node:path';
import type { RemoteMqttAuth } from '../agent/sysroot.ts';
import { type ParsedArgs, need, opt } from './command.ts';

export const MQTT_AUTH_OPTIONS = { 'mqtt-username': { type: 'string' as const }, 'mqtt-password-file': { type: 'string' as const }, 'mqtt-ca': { type: 'string' as const }, 'mqtt-cert': { type: 'string' as const }, 'mqtt-key': { type: 'string' as const } };
export const MQTT_AUTH_HELP = `  --mqtt-username U      broker user name (or in the URL: mqtt://U:P@HOST)
  --mqtt-password-file F read the broker password from F
  --mqtt-ca F, --mqtt-cert F, --mqtt-key F   TLS (mqtts://): CA, client certificate and key`;

export function mqttSettings(args: ParsedArgs, cmd: string) {
  return { url: need(args, 'mqtt', cmd), username: opt(args, 'mqtt-username'), passwordFile: opt(args, 'mqtt-password-file'), caFile: opt(args, 'mqtt-ca'), certFile: opt(args, 'mqtt-cert'), keyFile: opt(args, 'mqtt-key') };
}

/** The broker login and TLS files of the options above, as absolute paths (undefined: none given). provision, remote add. */
export function remoteMqttAuth(args: ParsedArgs): RemoteMqttAuth | undefined {
  const file = (name: string) => (opt(args, name) === undefined ? undefined : resolve(opt(args, name)!));
  const auth: RemoteMqttAuth = { username: opt(args, 'mqtt-username'), passwordFile: file('mqtt-password-file'), caFile: file('mqtt-ca'), certFile: file('mqtt-cert'), keyFile: file('mqtt-key') };
  const given = Object.entries(auth).filter(([, v]) => v !== undefined);
  return given.length ? (Object.fromEntries(given) as RemoteMqttAuth) : undefined;
}
