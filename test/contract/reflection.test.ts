// Contract: a server from startGrpcServer serves grpc.health.v1 and server reflection, and what
// reflection hands to clients is exactly the descriptor set buf compiles from proto/, comments
// included, so `buf curl` and grpcurl see the real types and documentation.
import { readFileSync } from 'node:fs';
import {
  createFileRegistry,
  type DescEnum,
  type DescEnumValue,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type FileRegistry,
} from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { BinaryReader, WireType } from '@bufbuild/protobuf/wire';
import test from 'ava';
import { ClientError, createChannel, createClient, Status } from 'nice-grpc';
import { ServerReflectionService } from 'nice-grpc-server-reflection';
import reflectionPb from 'nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb.js';
import { HealthCheckResponse_ServingStatus, HealthDefinition } from '../../gen/ts/grpc/health/v1/health.js';
import { REFLECTION_IMAGE_PATH } from '../../lib/grpc/image.js';
import { type RunningServer, startGrpcServer } from '../../lib/grpc/server.js';
import { createLogger } from '../../lib/log.js';
import { bufCurl, describeResult, outputLines, runBuf } from '../helpers/buf.js';

type ReflectionRequest = InstanceType<typeof reflectionPb.ServerReflectionRequest>;
type ReflectionResponse = InstanceType<typeof reflectionPb.ServerReflectionResponse>;

const HEALTH = 'grpc.health.v1.Health';

/** The services ARCHITECTURE.md names; the image may hold more. */
const ARCHITECTURE_SERVICES = [
  'ultracloud.bootstrap.v1.BootstrapService',
  'ultracloud.deployer.v1.MachineService',
  'ultracloud.deployer.v1.ClusterService',
  'ultracloud.host.v1.HostAgentService',
  'ultracloud.host.v1.HostDeploymentService',
  'ultracloud.runtime.v1.NodeAgentService',
  'ultracloud.runtime.v1.SchedulerService',
];

let server: RunningServer;
/** A fresh `buf build` of proto/: what reflection must serve. */
let freshImage: Uint8Array;

test.before(async () => {
  const build = await runBuf(['build', '-o', '-#format=binpb']);
  if (build.code !== 0) throw new Error(describeResult('build -o -', build));
  freshImage = build.stdoutBytes;
  server = await startGrpcServer({
    logger: createLogger({ level: 'silent' }),
    listen: { host: '127.0.0.1', port: 0 },
    services: [],
    policy: {},
  });
});

test.after.always(async () => {
  await server?.stop();
});

function registryOf(image: Uint8Array): FileRegistry & { services: DescService[] } {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, image));
  const services: DescService[] = [];
  for (const file of registry.files) services.push(...file.services);
  return Object.assign(registry, { services });
}

/** Each file of a FileDescriptorSet as the exact bytes buf wrote, keyed by file name. */
function fileSlices(image: Uint8Array): Map<string, Uint8Array> {
  const reader = new BinaryReader(image);
  const files = new Map<string, Uint8Array>();
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      const bytes = reader.bytes();
      files.set(fromBinary(FileDescriptorProtoSchema, bytes).name, bytes);
    } else {
      reader.skip(wireType, field);
    }
  }
  return files;
}

/** Sends the requests on one ServerReflectionInfo stream and returns one response per request. */
async function reflect(requests: ReflectionRequest[]): Promise<ReflectionResponse[]> {
  const channel = createChannel(server.address);
  try {
    const client = createClient(ServerReflectionService, channel);
    async function* send() {
      yield* requests;
    }
    const responses: ReflectionResponse[] = [];
    for await (const response of client.serverReflectionInfo(send(), { signal: AbortSignal.timeout(10_000) })) {
      responses.push(response);
    }
    return responses;
  } finally {
    channel.close();
  }
}

function servedFiles(response: ReflectionResponse | undefined): Uint8Array[] {
  if (!response) throw new Error('no reflection response');
  if (response.hasErrorResponse()) {
    const error = response.getErrorResponse();
    throw new Error(`reflection error ${error?.getErrorCode()}: ${error?.getErrorMessage()}`);
  }
  return response.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? [];
}

function servedFile(response: ReflectionResponse | undefined): FileDescriptorProto {
  const files = servedFiles(response);
  if (files.length === 0) throw new Error('reflection returned no file descriptor');
  return fromBinary(FileDescriptorProtoSchema, files[0] as Uint8Array);
}

test('the buf image declares every UltraCloud service the architecture names, each with RPCs', (t) => {
  const { services } = registryOf(readFileSync(REFLECTION_IMAGE_PATH));
  const ours = services.filter((s) => s.typeName.startsWith('ultracloud.')).map((s) => s.typeName);
  for (const name of ARCHITECTURE_SERVICES) t.true(ours.includes(name), `${name} missing from gen/ultracloud.binpb; image has ${ours.join(', ')}`);
  for (const s of services) t.true(s.methods.length > 0, `${s.typeName} has no RPCs`);
  t.true(
    services.some((s) => s.typeName === HEALTH),
    'grpc.health.v1.Health is not in the image, so reflection cannot describe it',
  );
});

test('every UltraCloud service, RPC, message, field and enum value in the image carries a comment', (t) => {
  const registry = registryOf(readFileSync(REFLECTION_IMAGE_PATH));
  const uncommented: string[] = [];
  const check = (desc: Documented, name: string) => {
    if (!leadingComment(desc)?.trim()) uncommented.push(name);
  };
  const checkEnum = (e: DescEnum) => {
    check(e, e.typeName);
    for (const v of e.values) check(v, `${e.typeName}.${v.name}`);
  };
  const checkMessage = (m: DescMessage) => {
    if (m.proto.options?.mapEntry) return;
    check(m, m.typeName);
    for (const f of m.fields) check(f, `${m.typeName}.${f.name}`);
    for (const nested of m.nestedMessages) checkMessage(nested);
    for (const e of m.nestedEnums) checkEnum(e);
  };
  let files = 0;
  for (const file of registry.files) {
    if (!file.proto.package.startsWith('ultracloud.')) continue;
    files += 1;
    for (const s of file.services) {
      check(s, s.typeName);
      for (const m of s.methods) check(m, `${s.typeName}.${m.name}`);
    }
    for (const m of file.messages) checkMessage(m);
    for (const e of file.enums) checkEnum(e);
  }
  t.true(files > 0, 'no ultracloud files in the image');
  t.deepEqual(uncommented, [], `these lack a leading comment (reflection shows comments as the API reference):\n${uncommented.join('\n')}`);
});

type Documented = DescService | DescMethod | DescMessage | DescField | DescEnum | DescEnumValue;

/** The descriptor's leading comment, looked up in its file's source info by descriptor.proto path. */
function leadingComment(desc: Documented): string | undefined {
  const path = descriptorPath(desc);
  const file = desc.kind === 'enum_value' || desc.kind === 'rpc' || desc.kind === 'field' ? desc.parent.file : desc.file;
  return file.proto.sourceCodeInfo?.location.find((l) => l.path.length === path.length && l.path.every((p, i) => p === path[i]))?.leadingComments;
}

function descriptorPath(desc: Documented): number[] {
  switch (desc.kind) {
    case 'service':
      return [6, desc.file.proto.service.indexOf(desc.proto)];
    case 'rpc':
      return [...descriptorPath(desc.parent), 2, desc.parent.proto.method.indexOf(desc.proto)];
    case 'message':
      return desc.parent
        ? [...descriptorPath(desc.parent), 3, desc.parent.proto.nestedType.indexOf(desc.proto)]
        : [4, desc.file.proto.messageType.indexOf(desc.proto)];
    case 'field':
      return [...descriptorPath(desc.parent), 2, desc.parent.proto.field.indexOf(desc.proto)];
    case 'enum':
      return desc.parent
        ? [...descriptorPath(desc.parent), 4, desc.parent.proto.enumType.indexOf(desc.proto)]
        : [5, desc.file.proto.enumType.indexOf(desc.proto)];
    case 'enum_value':
      return [...descriptorPath(desc.parent), 2, desc.parent.proto.value.indexOf(desc.proto)];
  }
}

test('buf curl lists grpc.health.v1.Health and its methods through reflection', async (t) => {
  const services = await bufCurl(server.address, ['--list-services']);
  t.is(services.code, 0, describeResult('curl --list-services', services));
  // The server registered no UltraCloud services, so Health is all it may advertise.
  t.deepEqual(outputLines(services), [HEALTH]);

  const methods = await bufCurl(server.address, ['--list-methods']);
  t.is(methods.code, 0, describeResult('curl --list-methods', methods));
  t.deepEqual(outputLines(methods).sort(), [`${HEALTH}/Check`, `${HEALTH}/Watch`]);

  const check = await bufCurl(server.address, ['--data', '{}'], { path: `${HEALTH}/Check` });
  t.is(check.code, 0, describeResult('curl Health/Check', check));
  t.deepEqual(JSON.parse(check.stdout), { status: 'SERVING' });
});

test('health reports SERVING for the server and NOT_FOUND for a service it does not run', async (t) => {
  const channel = createChannel(server.address);
  t.teardown(() => channel.close());
  const health = createClient(HealthDefinition, channel);
  const overall = await health.check({ service: '' }, { signal: AbortSignal.timeout(5_000) });
  t.is(overall.status, HealthCheckResponse_ServingStatus.SERVING);
  const error = await t.throwsAsync(health.check({ service: 'ultracloud.nothing.v1.NothingService' }, { signal: AbortSignal.timeout(5_000) }), {
    instanceOf: ClientError,
  });
  t.is(error?.code, Status.NOT_FOUND);
});

test('reflection serves every file of the buf image byte for byte, comments included', async (t) => {
  const expected = fileSlices(freshImage);
  t.true(expected.size > 0);
  const names = [...expected.keys()];
  const responses = await reflect(
    names.map((name) => new reflectionPb.ServerReflectionRequest().setFileByFilename(name)),
  );
  t.is(responses.length, names.length);
  const differing: string[] = [];
  names.forEach((name, i) => {
    const served = servedFiles(responses[i]);
    if (served.length !== 1 || !Buffer.from(served[0] as Uint8Array).equals(expected.get(name) as Uint8Array)) differing.push(name);
  });
  t.deepEqual(differing, [], 'reflection serves these files differently from a fresh `buf build` (stale gen/ultracloud.binpb? run npm run generate)');

  const [unknown] = await reflect([new reflectionPb.ServerReflectionRequest().setFileByFilename('ultracloud/nothing/v1/nothing.proto')]);
  t.true(unknown?.hasErrorResponse(), 'an unknown file name must be an error response');
  t.is(unknown?.getErrorResponse()?.getErrorCode(), Status.NOT_FOUND);
});

test('reflection resolves grpc.health.v1.Health and every UltraCloud service to the file buf compiled for it', async (t) => {
  const registry = registryOf(freshImage);
  const expected = fileSlices(freshImage);
  const services = registry.services.filter((s) => s.typeName === HEALTH || s.typeName.startsWith('ultracloud.'));
  t.true(services.length > ARCHITECTURE_SERVICES.length);
  const responses = await reflect(services.map((s) => new reflectionPb.ServerReflectionRequest().setFileContainingSymbol(s.typeName)));
  services.forEach((service, i) => {
    const served = servedFiles(responses[i]);
    t.is(served.length, 1, `${service.typeName}: expected one file`);
    t.deepEqual(Buffer.from(served[0] as Uint8Array), Buffer.from(expected.get(service.file.proto.name) as Uint8Array), `${service.typeName} served from a different descriptor`);
  });

  // What a client shows as documentation: Health's served descriptor names its RPCs and keeps comments.
  const health = servedFile(responses[services.findIndex((s) => s.typeName === HEALTH)]);
  t.is(health.package, 'grpc.health.v1');
  t.deepEqual(
    health.service.find((s) => s.name === 'Health')?.method.map((m) => m.name),
    ['Check', 'Watch'],
  );
  const comments = health.sourceCodeInfo?.location.map((l) => l.leadingComments.trim()) ?? [];
  t.true(comments.includes('Check returns the current status of a service.'), `comments served: ${JSON.stringify(comments)}`);
});
