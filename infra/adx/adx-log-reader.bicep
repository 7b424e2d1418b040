// The ADX cluster's identity may read the log hub (and nothing else): used by
// adx-data-connection.bicep, deployed in the log hub's resource group.

param namespaceName string
param eventHubName string

@description('Principal (object) id of the ADX cluster system-assigned identity.')
param clusterPrincipalId string

var eventHubsDataReceiverRoleId = 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' existing = {
  name: namespaceName
}

resource logHub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' existing = {
  parent: namespace
  name: eventHubName
}

resource clusterReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(logHub.id, clusterPrincipalId, eventHubsDataReceiverRoleId)
  scope: logHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventHubsDataReceiverRoleId)
    principalId: clusterPrincipalId
    principalType: 'ServicePrincipal'
  }
}
