#!/usr/bin/env node
// Runs one scenario with KafkaJS against a Kafka-compatible broker.
//
// Usage: node index.js BOOTSTRAP admin|produce|consume TOPIC
//
// On success it prints one JSON line and exits 0; on failure it prints the error and exits 1.
'use strict'

const { Kafka, logLevel, Partitioners } = require('kafkajs')
const kafkajsVersion = require('kafkajs/package.json').version

const PARTITIONS = 3
const RECORDS = 1000
const DEADLINE_MS = 90000

// KafkaJS logs through console.log by default: send its warnings and errors to stderr, so stdout
// carries the summary line only.
const logCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log
  process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(extra)}\n`)
}

function client (bootstrap) {
  return new Kafka({
    clientId: 'eventyard-kafkajs',
    brokers: bootstrap.split(','),
    logLevel: logLevel.WARN,
    logCreator,
    requestTimeout: 15000,
    retry: { retries: 5 }
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function createTopic (admin, topic) {
  // false when the topic already exists; an error for anything else.
  return admin.createTopics({
    topics: [{ topic, numPartitions: PARTITIONS, replicationFactor: 1 }],
    waitForLeaders: true,
    timeout: 15000
  })
}

async function adminScenario (kafka, topic) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    const created = await createTopic(admin, topic)
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
    const described = metadata.topics.find((t) => t.name === topic)
    const listed = (await admin.listTopics()).includes(topic)
    await admin.deleteTopics({ topics: [topic], timeout: 15000 })
    let deleted = false
    const until = Date.now() + 15000
    while (!deleted && Date.now() < until) {
      deleted = !(await admin.listTopics()).includes(topic)
      if (!deleted) await sleep(100)
    }
    return { created, partitions: described ? described.partitions.length : 0, listed, deleted }
  } finally {
    await admin.disconnect()
  }
}

async function produceScenario (kafka, topic) {
  const admin = kafka.admin()
  await admin.connect()
  try {
    await createTopic(admin, topic)
  } finally {
    await admin.disconnect()
  }
  // Idempotent (KafkaJS calls it experimental): InitProducerId, then sequence numbers on every batch.
  // KafkaJS warns on stderr that a bounded retry count weakens that; the watchdog needs it bounded.
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 1
  })
  await producer.connect()
  const partitionsUsed = new Set()
  let produced = 0
  try {
    const messages = []
    for (let i = 0; i < RECORDS; i++) {
      messages.push({ key: `key-${i}`, value: `value-${i}` })
    }
    // Several requests, as an application sending in batches would.
    for (let start = 0; start < RECORDS; start += 250) {
      const results = await producer.send({ topic, acks: -1, messages: messages.slice(start, start + 250) })
      for (const r of results) {
        if (r.errorCode !== 0) throw new Error(`produce to partition ${r.partition}: error ${r.errorCode}`)
        partitionsUsed.add(r.partition)
      }
      produced += Math.min(250, RECORDS - start)
    }
  } finally {
    await producer.disconnect()
  }
  return { produced, partitions_used: partitionsUsed.size, idempotent: true }
}

// Joins the group, and calls onMessage for every record until stop() resolves; the set of
// partitions assigned to the consumer and the running consumer are returned.
async function groupConsumer (kafka, topic, groupId, onMessage) {
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, sessionTimeout: 10000, heartbeatInterval: 1000 })
  const state = { consumer, assigned: -1 }
  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    const assignment = e.payload.memberAssignment[topic] || []
    state.assigned = assignment.length
  })
  await consumer.connect()
  await consumer.subscribe({ topics: [topic], fromBeginning: true })
  await consumer.run({ autoCommit: false, eachMessage: async ({ partition, message }) => onMessage(partition, message) })
  return state
}

async function consumeScenario (kafka, topic) {
  const groupId = `${topic}-group`
  const keys = new Set()
  const next = new Map() // partition -> the offset after the last record seen
  let consumed = 0
  let mismatched = 0
  const first = await groupConsumer(kafka, topic, groupId, (partition, message) => {
    consumed++
    const key = message.key.toString()
    keys.add(key)
    if (message.value.toString() !== `value-${key.slice(4)}`) mismatched++
    next.set(partition, BigInt(message.offset) + 1n)
  })
  try {
    const until = Date.now() + 30000
    while (consumed < RECORDS && Date.now() < until) await sleep(50)
    await sleep(600) // more than RECORDS records would be a duplicate delivery
    await first.consumer.commitOffsets(
      [...next].map(([partition, offset]) => ({ topic, partition, offset: offset.toString() }))
    )
  } finally {
    await first.consumer.disconnect()
  }

  const admin = kafka.admin()
  await admin.connect()
  let committed = 0n
  try {
    const offsets = await admin.fetchOffsets({ groupId, topics: [topic] })
    for (const t of offsets) {
      for (const p of t.partitions) {
        if (BigInt(p.offset) > 0n) committed += BigInt(p.offset)
      }
    }
  } finally {
    await admin.disconnect()
  }

  let secondConsumed = 0
  const second = await groupConsumer(kafka, topic, groupId, () => { secondConsumed++ })
  let secondAssigned
  try {
    const until = Date.now() + 20000
    while (second.assigned < 0 && Date.now() < until) await sleep(50)
    await sleep(1000) // time to fetch anything the commit failed to cover
    secondAssigned = second.assigned
  } finally {
    await second.consumer.disconnect()
  }
  return {
    group: groupId,
    consumed,
    unique_keys: keys.size,
    mismatched,
    committed: Number(committed),
    second_assigned: secondAssigned,
    second_consumed: secondConsumed
  }
}

async function main () {
  const [bootstrap, scenario, topic] = process.argv.slice(2)
  const scenarios = { admin: adminScenario, produce: produceScenario, consume: consumeScenario }
  if (!topic || !scenarios[scenario]) {
    process.stderr.write('usage: node index.js BOOTSTRAP admin|produce|consume TOPIC\n')
    process.exit(2)
  }
  const watchdog = setTimeout(() => {
    process.stderr.write('error: scenario did not finish in time\n')
    process.exit(1)
  }, DEADLINE_MS)
  watchdog.unref()
  const summary = await scenarios[scenario](client(bootstrap), topic)
  process.stdout.write(JSON.stringify({ client: 'kafkajs', version: kafkajsVersion, scenario, topic, ...summary }) + '\n')
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`error: ${err && err.stack ? err.stack : err}\n`)
    process.exit(1)
  }
)
