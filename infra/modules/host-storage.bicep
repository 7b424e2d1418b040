// Storage for the Functions host (AzureWebJobsStorage) and the deployment package.
//
// Why a separate account from the lake:
//   * churn: the Event Hubs trigger keeps its checkpoints and partition leases here
//     and renews leases every few seconds; the timer takes its singleton lock and
//     schedule-monitor blobs here. Keeping that off the lake keeps the lake's
//     request metrics, logs, lifecycle rules and listings about data only.
//   * access policy: the app needs Storage Blob Data Owner on this account (the
//     host creates containers and manages leases); on the lake it only needs
//     Storage Blob Data Contributor on one container. Readers of the lake (Spark,
//     Snowflake, DuckDB) never get access to checkpoints or the code package.
//   * shape: this is a plain StorageV2 account (no hierarchical namespace), the
//     layout the Functions host and Flex Consumption deployment are tested with.
//
// Identity-based access only: shared keys are disabled, so no connection string
// exists to leak. Azure Files (the classic content share) needs shared keys and is
// therefore not used: Flex Consumption deploys from the blob container below, and
// Elastic Premium runs from a package URL in the same container.

param name string
param location string
param tags object = {}

@description('Blob container holding the deployment package.')
param deploymentContainerName string = 'app-package'

@description('Principal (object) id of the function app identity.')
param identityPrincipalId string

@description('Optional principal (object) id of the deployer; empty = none. It may upload the package blob (needed for Elastic Premium, which runs from a package URL).')
param deployerPrincipalId string = ''

// Built-in roles.
// Storage Blob Data Owner: the host's general coordination, leases, checkpoints,
// timer locks, key store; Flex Consumption reads the package with it.
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Table Data Contributor: the host persists diagnostic events in tables.
var storageTableDataContributorRoleId = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Storage Blob Data Contributor, for the optional deployer, on the package container only.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// No queue role: queues are only used by blob triggers / Durable Functions, which
// this app does not have (Event Hubs trigger and timer use blobs only).

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identityPrincipalId, storageTableDataContributorRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributorRoleId)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource deployerPackageWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(deploymentContainer.id, deployerPrincipalId, storageBlobDataContributorRoleId)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: deployerPrincipalId
  }
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
output deploymentContainerName string = deploymentContainer.name
output deploymentContainerUrl string = '${storage.properties.primaryEndpoints.blob}${deploymentContainer.name}'
