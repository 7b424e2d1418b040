// Event Hubs: namespace, hub and the consumer group hub2lake reads with.
//
// Local (SAS key) authentication is disabled on a namespace this template creates:
// the Functions host connects with the user-assigned identity
// (EventHubConnection__fullyQualifiedNamespace / __credential / __clientId), which
// gets "Azure Event Hubs Data Receiver" on the hub only. A dedicated consumer group
// keeps hub2lake's checkpoints independent of any other reader of the same hub.
//
// Reuse: with createNamespace = false the namespace and the hub must already exist;
// only the consumer group and the role assignments are added.
//
// Log stream (issue 17): the handler streams its JSON logs to the `application-logs`
// hub of the same namespace (HUB2LAKE_LOG_EVENTHUB_NAMESPACE / _NAME), where an Azure
// Data Explorer data connection reads them with the `adx` consumer group
// (infra/adx/). The app identity gets "Azure Event Hubs Data Sender" on that hub only.
// On a reused namespace the log hub is created when createLogEventHub is true
// (default: only with a new namespace, since an existing one usually has it already;
// its partition count cannot change on Standard).

param namespaceName string

@description('Create the namespace and hub (true) or reuse existing ones (false).')
param createNamespace bool = true

param location string
param tags object = {}

@allowed([
  'Standard'
  'Premium'
])
param skuName string = 'Standard'

@description('Throughput units (Standard: 1-40) or processing units (Premium: 1, 2, 4, 8 or 16); main.bicep bounds each per tier.')
@minValue(1)
@maxValue(40)
param capacity int = 1

param eventHubName string

@minValue(1)
@maxValue(32)
param partitionCount int = 4

@description('Standard: at most 7 days; Premium: at most 90 (main.bicep bounds each per tier).')
@minValue(1)
@maxValue(90)
param messageRetentionInDays int = 7

param consumerGroupName string = 'hub2lake'

@description('Principal (object) id of the function app identity (receives events).')
param identityPrincipalId string

@description('Optional principal (object) id allowed to send test events (the deployer); empty = none.')
param senderPrincipalId string = ''

@description('Event Hub the handler streams its logs to (the ADX data connection reads it).')
param logEventHubName string = 'application-logs'

@description('Create the log hub (true) or use an existing one of that name (false).')
param createLogEventHub bool = createNamespace

@description('Partitions of a newly created log hub.')
@minValue(1)
@maxValue(32)
param logPartitionCount int = 2

@description('Days log events are retained in a newly created log hub (Standard: at most 7).')
@minValue(1)
@maxValue(90)
param logMessageRetentionInDays int = 1

@description('Consumer group of the ADX data connection on the log hub.')
param logConsumerGroupName string = 'adx'

// Built-in roles.
var eventHubsDataReceiverRoleId = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
var eventHubsDataSenderRoleId = '2b629674-e913-4c01-ae53-ef4638d8f975'

resource eventHubNamespace 'Microsoft.EventHub/namespaces@2024-01-01' = if (createNamespace) {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuName
    capacity: capacity
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = if (createNamespace) {
  parent: eventHubNamespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource targetNamespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource targetHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: targetNamespace
  name: eventHubName
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: targetHub
  name: consumerGroupName
  properties: {
    userMetadata: 'hub2lake: Event Hubs to ADLS Gen2 JSON Lines'
  }
  dependsOn: [
    eventHubNamespace
    eventHub
  ]
}

resource receiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(targetHub.id, identityPrincipalId, eventHubsDataReceiverRoleId)
  scope: targetHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    eventHub
  ]
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(senderPrincipalId)) {
  name: guid(targetHub.id, senderPrincipalId, eventHubsDataSenderRoleId)
  scope: targetHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRoleId)
    principalId: senderPrincipalId
  }
  dependsOn: [
    eventHub
  ]
}

resource logHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = if (createLogEventHub) {
  parent: targetNamespace
  name: logEventHubName
  properties: {
    partitionCount: logPartitionCount
    messageRetentionInDays: logMessageRetentionInDays
  }
  dependsOn: [
    eventHubNamespace
  ]
}

resource targetLogHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: targetNamespace
  name: logEventHubName
}

resource adxConsumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: targetLogHub
  name: logConsumerGroupName
  properties: {
    userMetadata: 'Azure Data Explorer: PipelineLogs data connection'
  }
  dependsOn: [
    logHub
  ]
}

// The handler sends its log stream with the app identity; send only, this hub only.
resource logSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(targetLogHub.id, identityPrincipalId, eventHubsDataSenderRoleId)
  scope: targetLogHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataSenderRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    logHub
  ]
}

// serviceBusEndpoint looks like https://<namespace>.servicebus.windows.net:443/
output namespaceFqdn string = split(replace(targetNamespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0]
output namespaceName string = targetNamespace.name
output eventHubName string = targetHub.name
output consumerGroupName string = consumerGroup.name
output logEventHubName string = targetLogHub.name
output logEventHubId string = targetLogHub.id
output logConsumerGroupName string = adxConsumerGroup.name
