// Optional (off by default, because ADX costs): the Azure Data Explorer side of the log
// stream. Deployed by main.bicep only when adxClusterName is set, into the resource
// group of an EXISTING cluster and database; nothing here creates a cluster.
//
// * runs pipeline-logs.kql as a database script: the PipelineLogs table, its JSON
//   mapping (every field the stream writes, $.message among them) and the streaming
//   ingestion policy;
// * creates the Event Hubs data connection from the log hub's `adx` consumer group,
//   authenticated with the cluster's system-assigned identity, which gets "Azure Event
//   Hubs Data Receiver" on the log hub only (adx-log-reader.bicep, in the hub's group).
//
// Resource shapes: Microsoft.Kusto clusters/databases/dataConnections (kind EventHub)
// and clusters/databases/scripts (scriptContent), API 2023-08-15, as in the template
// reference at learn.microsoft.com/azure/templates/microsoft.kusto/2023-08-15/.
// Streaming ingestion must also be enabled on the cluster (enableStreamingIngest);
// without it the connection falls back to queued ingestion (minutes, not seconds).

@description('Existing ADX cluster (with a system-assigned identity).')
param clusterName string

@description('Existing database of that cluster.')
param databaseName string

@description('Resource id of the log hub (event-hubs.bicep output logEventHubId).')
param logEventHubId string

@description('Consumer group of the log hub reserved for ADX.')
param consumerGroupName string = 'adx'

param tableName string = 'PipelineLogs'
param mappingName string = 'PipelineLogsMapping'

@description('Change to re-run the KQL script on an existing database.')
param scriptTag string = 'pipeline-logs-v1'

param location string = resourceGroup().location

resource cluster 'Microsoft.Kusto/clusters@2023-08-15' existing = {
  name: clusterName
}

resource database 'Microsoft.Kusto/clusters/databases@2023-08-15' existing = {
  parent: cluster
  name: databaseName
}

resource schema 'Microsoft.Kusto/clusters/databases/scripts@2023-08-15' = {
  parent: database
  name: 'pipeline-logs'
  properties: {
    scriptContent: loadTextContent('pipeline-logs.kql')
    continueOnErrors: false
    forceUpdateTag: scriptTag
  }
}

// The hub may live in another resource group (a reused namespace).
module reader 'adx-log-reader.bicep' = {
  name: 'adx-log-reader'
  scope: resourceGroup(split(logEventHubId, '/')[2], split(logEventHubId, '/')[4])
  params: {
    namespaceName: split(logEventHubId, '/')[8]
    eventHubName: split(logEventHubId, '/')[10]
    clusterPrincipalId: cluster.identity.principalId
  }
}

resource connection 'Microsoft.Kusto/clusters/databases/dataConnections@2023-08-15' = {
  parent: database
  name: 'pipeline-logs'
  location: location
  kind: 'EventHub'
  properties: {
    eventHubResourceId: logEventHubId
    consumerGroup: consumerGroupName
    tableName: tableName
    mappingRuleName: mappingName
    // One JSON object per event; MULTIJSON also accepts several per event.
    dataFormat: 'MULTIJSON'
    compression: 'None'
    databaseRouting: 'Single'
    managedIdentityResourceId: cluster.id
  }
  dependsOn: [
    schema
    reader
  ]
}

output dataConnectionName string = connection.name
