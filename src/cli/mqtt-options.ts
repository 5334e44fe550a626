/** The broker options of the commands that talk MQTT (announce, command, serve --mqtt, provision --mqtt-url). */
import { type ParsedArgs, need, opt } from './command.ts';

export const MQTT_AUTH_OPTIONS = { 'mqtt-username': { type: 'string' as const }, 'mqtt-password-file': { type: 'string' as const }, 'mqtt-ca': { type: 'string' as const }, 'mqtt-cert': { type: 'string' as const }, 'mqtt-key': { type: 'string' as const } };
export const MQTT_AUTH_HELP = `  --mqtt-username U      broker user name (or in the URL: mqtt://U:P@HOST)
  --mqtt-password-file F read the broker password from F
  --mqtt-ca F, --mqtt-cert F, --mqtt-key F   TLS (mqtts://): CA, client certificate and key`;

export function mqttSettings(args: ParsedArgs, cmd: string) {
  return { url: need(args, 'mqtt', cmd), username: opt(args, 'mqtt-username'), passwordFile: opt(args, 'mqtt-password-file'), caFile: opt(args, 'mqtt-ca'), certFile: opt(args, 'mqtt-cert'), keyFile: opt(args, 'mqtt-key') };
}
